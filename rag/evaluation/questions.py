"""Question sets: the YAML/JSONL schema, loading and validation, with errors that name the line."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rag.config import RagError

if TYPE_CHECKING:
    pass


class EvaluationError(RagError):
    """A question set, a previous run or a dataset cannot be used; the message says why."""


_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"'})
_DASHES = re.compile(r"[\u2010-\u2015\u2212]")


def normalise(text: str) -> str:
    """Case-folded, NFKC, straight quotes and dashes, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text or "").translate(_QUOTES)
    text = _DASHES.sub("-", text)
    return " ".join(text.casefold().split())


# Question sets -------------------------------------------------------------------------------

ExpectedGroups = list[list[str]]


def _normalise_expected(value: Any) -> ExpectedGroups | None:
    """``expected`` as a list of groups (each a list of alternatives).

    Shorthands, accepted only where they cannot be misread:
    - a bare string ``"x"`` is ``[["x"]]``;
    - a one-string list ``["x"]`` is ``[["x"]]``;
    - in a list that holds at least one list, a bare string is a one-alternative group:
      ``["x", ["y", "z"]]`` is ``[["x"], ["y", "z"]]``.
    A flat list of two or more strings is rejected: it could mean "any of" or "all of".
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = [[value]]
    if not isinstance(value, list):
        raise ValueError("must be a string or a list of groups, e.g. [['90%', '90 percent']]")
    if not value:
        raise ValueError("is empty; leave 'expected' out instead")
    if all(isinstance(group, str) for group in value):
        if len(value) > 1:
            shown = ", ".join(repr(v) for v in value[:3])
            raise ValueError(
                f"[{shown}] is ambiguous: write [[{shown}]] if any one of them may match, or "
                + "[" + ", ".join(f"[{v!r}]" for v in value[:3]) + "] if all must"
            )  # fmt: skip
        value = [value]
    groups: ExpectedGroups = []
    for number, group in enumerate(value, start=1):
        alternatives = [group] if isinstance(group, str) else group
        if not isinstance(alternatives, list) or not alternatives:
            raise ValueError(f"group {number} must be a string or a non-empty list of strings")
        cleaned = []
        for alternative in alternatives:
            if not isinstance(alternative, (str, int, float)) or isinstance(alternative, bool):
                raise ValueError(f"group {number} holds {alternative!r}, not a string")
            text = str(alternative).strip()
            if not text:
                raise ValueError(f"group {number} holds an empty string")
            cleaned.append(text)
        groups.append(cleaned)
    return groups


def _normalise_evidence(value: Any) -> list[str] | None:
    """``evidence`` as a list of alternative substrings (any one may be found)."""
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise ValueError("must be a string or a non-empty list of strings (any one may match)")
    cleaned = []
    for item in values:
        if not isinstance(item, str) or not normalise(item):
            raise ValueError(f"{item!r} is not a non-empty string")
        cleaned.append(item)
    return cleaned


def _clean_id(value: Any) -> Any:
    """Ids are strings; a YAML number (q: 1) is accepted as its text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()
    return value


class Case(BaseModel):
    """One question (or one conversation turn) and what a good answer looks like."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    question: str
    answerable: bool = True
    expected: ExpectedGroups | None = None
    evidence: list[str] | None = None
    source: str | None = None
    note: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return _clean_id(value)

    @field_validator("question")
    @classmethod
    def _question_text(cls, value: str) -> str:
        if not re.search(r"\w", value):
            raise ValueError("must contain words")
        return value.strip()

    @field_validator("expected", mode="before")
    @classmethod
    def _expected(cls, value: Any) -> Any:
        return _normalise_expected(value)

    @field_validator("evidence", mode="before")
    @classmethod
    def _evidence(cls, value: Any) -> Any:
        return _normalise_evidence(value)

    @model_validator(mode="after")
    def _consistent(self) -> Case:
        if not self.answerable and (self.expected or self.evidence):
            raise ValueError(
                "an unanswerable question (answerable: false) cannot have 'expected' or "
                "'evidence': the system should refuse it"
            )
        return self


class Question(Case):
    """A stand-alone question: its id is required."""

    id: str


class Conversation(BaseModel):
    """A multi-turn dialogue; turns without an id get ``<conversation id>.<turn number>``."""

    model_config = ConfigDict(extra="forbid")

    id: str
    turns: list[Case] = Field(min_length=1)
    note: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return _clean_id(value)


class QuestionSet(BaseModel):
    """A named set of questions and conversations."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    questions: list[Question] = Field(default_factory=list)
    conversations: list[Conversation] = Field(default_factory=list)

    def items(self) -> list[EvalItem]:
        """Every question and turn, in file order (questions first), with its final id."""
        flat = [EvalItem(question.id or "", question) for question in self.questions]
        for conversation in self.conversations:
            for number, turn in enumerate(conversation.turns, start=1):
                item_id = turn.id or f"{conversation.id}.{number}"
                flat.append(EvalItem(item_id, turn, conversation.id, number))
        return flat

    @model_validator(mode="after")
    def _unique_ids(self) -> QuestionSet:
        if not self.questions and not self.conversations:
            raise ValueError("the set has no questions and no conversations")
        seen: set[str] = set()
        for item in self.items():
            if item.id in seen:
                where = f" (in conversation {item.conversation!r})" if item.conversation else ""
                raise ValueError(f"duplicate id {item.id!r}{where}")
            seen.add(item.id)
        return self


@dataclass(frozen=True)
class EvalItem:
    """One question to ask: a stand-alone question or a conversation turn."""

    id: str
    case: Case
    conversation: str | None = None
    turn: int | None = None


def _describe(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail.get("loc", ()))
        message = str(detail.get("msg", "invalid")).removeprefix("Value error, ")
        if detail.get("type") == "extra_forbidden":
            message = "unknown field (allowed: id, question, answerable, expected, evidence, "
            message += "source, note; turns for conversations)"
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def load_question_set(path: Path | str) -> QuestionSet:
    """Read and validate a question set (``.yaml``/``.yml`` or ``.jsonl``).

    Raises EvaluationError naming the file and the line (JSONL) or entry (YAML) at fault.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvaluationError(f"{path}: no such question set") from None
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(f"{path}: cannot read: {error}") from None
    if path.suffix.lower() == ".jsonl":
        return _load_jsonl(path, text)
    if path.suffix.lower() in (".yaml", ".yml"):
        return _load_yaml(path, text)
    raise EvaluationError(f"{path}: unknown question-set format; use .yaml, .yml or .jsonl")


def _item_ids(entry: Question | Conversation) -> list[str]:
    """The final ids of a question or of a conversation's turns."""
    if isinstance(entry, Question):
        return [entry.id]
    return [turn.id or f"{entry.id}.{n}" for n, turn in enumerate(entry.turns, start=1)]


def _load_jsonl(path: Path, text: str) -> QuestionSet:
    questions: list[Question] = []
    conversations: list[Conversation] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise EvaluationError(f"{path}, line {number}: invalid JSON: {error.msg}") from None
        if not isinstance(data, dict):
            raise EvaluationError(f"{path}, line {number}: expected a JSON object")
        try:
            entry: Question | Conversation
            if "turns" in data:
                entry = Conversation.model_validate(data)
                conversations.append(entry)
            else:
                entry = Question.model_validate(data)
                questions.append(entry)
        except ValidationError as error:
            raise EvaluationError(f"{path}, line {number}: {_describe(error)}") from None
        for item_id in _item_ids(entry):
            if item_id in first_line:
                raise EvaluationError(
                    f"{path}, line {number}: duplicate id {item_id!r} "
                    f"(first used on line {first_line[item_id]})"
                )
            first_line[item_id] = number
    try:
        return QuestionSet(name=path.stem, questions=questions, conversations=conversations)
    except ValidationError as error:
        raise EvaluationError(f"{path}: {_describe(error)}") from None


def _load_yaml(path: Path, text: str) -> QuestionSet:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise EvaluationError(f"{path}{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise EvaluationError(
            f"{path}: expected a mapping with 'questions' and/or 'conversations' at the top"
        )
    first_label: dict[str, str] = {}
    for key in ("questions", "conversations"):
        entries = data.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise EvaluationError(f"{path}: '{key}' must be a list")
        model = Question if key == "questions" else Conversation
        for index, entry in enumerate(entries):
            label = _yaml_entry_label(key, index, entry, root)
            if not isinstance(entry, dict):
                raise EvaluationError(f"{path}: {label}: expected a mapping")
            try:
                validated = model.model_validate(entry)
            except ValidationError as error:
                raise EvaluationError(f"{path}: {label}: {_describe(error)}") from None
            for item_id in _item_ids(validated):
                if item_id in first_label:
                    raise EvaluationError(
                        f"{path}: {label}: duplicate id {item_id!r} "
                        f"(first used by {first_label[item_id]})"
                    )
                first_label[item_id] = label
    try:
        question_set = QuestionSet.model_validate(data)
    except ValidationError as error:
        raise EvaluationError(f"{path}: {_describe(error)}") from None
    if question_set.name is None:
        question_set.name = path.stem
    return question_set


def _yaml_entry_label(key: str, index: int, entry: Any, root: Any) -> str:
    """'questions[3] (id 'q04', line 27)' for error messages."""
    parts = []
    if isinstance(entry, dict) and entry.get("id") is not None:
        parts.append(f"id {entry['id']!r}")
    line = _yaml_line(root, key, index)
    if line is not None:
        parts.append(f"line {line}")
    return f"{key}[{index}]" + (f" ({', '.join(parts)})" if parts else "")


def _yaml_line(root: Any, key: str, index: int) -> int | None:
    if not isinstance(root, yaml.MappingNode):
        return None
    for key_node, value_node in root.value:
        if (
            getattr(key_node, "value", None) == key
            and isinstance(value_node, yaml.SequenceNode)
            and index < len(value_node.value)
        ):
            return int(value_node.value[index].start_mark.line) + 1
    return None
