"""Scripted evaluation: question sets, deterministic metrics, comparisons, BEIR retrieval eval.

Every metric is computed offline and deterministically from the answers the pipeline returns;
no LLM judges anything. Two evaluations live here:

- ``rag eval``: a question set (YAML or JSONL; see :func:`load_question_set`) is run against the
  index — conversations turn by turn, with the system's own earlier answers as history — and each
  answer is checked against the expected strings, the evidence and its citations.
- ``rag eval-retrieval``: a BEIR-format dataset is ingested into its own collection and ranked by
  the dense, BM25 and fused retrievers; nDCG@k, Recall@100 and MRR@k are reported.

Metric conventions (also in README "Evaluation"):

- A metric with no eligible items is ``None`` (null in JSON), never 0.
- Answers match ``expected`` case-insensitively with whitespace collapsed; an alternative must
  start at a word boundary, and one ending in a digit must also end at one ('90' does not
  match '1990' or '900', 'drone' matches 'drones'). Citation markers are ignored.
- Evidence matches a chunk's text whitespace- and case-normalised (and only chunks of the item's
  ``source`` when one is given).
- "Answered" means not refused and a non-empty answer: refused or empty answers do not count for
  ``citation_accuracy`` and ``uncited_sentence_rate``; an empty answer is a wrong answer.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rag.config import RagError, Settings

if TYPE_CHECKING:
    from rag.answer import RAG, Answer
    from rag.ingest import IngestProgress, IngestReport


class EvaluationError(RagError):
    """A question set, a previous run or a dataset cannot be used; the message says why."""


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


# Matching ------------------------------------------------------------------------------------

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"'})
_DASHES = re.compile(r"[\u2010-\u2015\u2212]")
_MARKERS = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")


def normalise(text: str) -> str:
    """Case-folded, NFKC, straight quotes and dashes, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text or "").translate(_QUOTES)
    text = _DASHES.sub("-", text)
    return " ".join(text.casefold().split())


def matches_alternative(answer: str, alternative: str) -> bool:
    """Does ``alternative`` occur in ``answer`` (both normalised), starting at a word boundary
    and, if it ends in a digit, ending at one? '[n]' citation markers are ignored."""
    haystack = normalise(_MARKERS.sub("", answer))
    needle = normalise(alternative)
    if not needle:
        return False
    start = r"(?<![^\W_])" if needle[0].isalnum() else ""
    end = r"(?![\d])" if needle[-1].isdigit() else ""
    return re.search(start + re.escape(needle) + end, haystack) is not None


def missing_groups(answer: str, expected: ExpectedGroups) -> list[list[str]]:
    """The expected groups none of whose alternatives the answer contains."""
    return [
        group
        for group in expected
        if not any(matches_alternative(answer, alternative) for alternative in group)
    ]


def contains_evidence(text: str, evidence: Sequence[str]) -> bool:
    """Does ``text`` contain any of the evidence strings (whitespace- and case-normalised)?"""
    haystack = normalise(text)
    return any(normalise(piece) in haystack for piece in evidence)


def source_matches(chunk_source: str, wanted: str | None) -> bool:
    """True when no source is wanted, or the chunk's source is it (or ends with /it)."""
    if not wanted:
        return True
    chunk_source = chunk_source.replace("\\", "/")
    wanted = wanted.replace("\\", "/").lstrip("./")
    return chunk_source == wanted or chunk_source.endswith("/" + wanted)


# Scoring one answer ----------------------------------------------------------------------------


@dataclass
class ItemResult:
    """What happened to one question, and every check made on it (None: not applicable)."""

    id: str
    question: str
    answerable: bool
    conversation: str | None = None
    turn: int | None = None
    standalone_question: str | None = None
    expected: ExpectedGroups | None = None
    evidence: list[str] | None = None
    source: str | None = None
    answer: str = ""
    refused: bool = False
    empty_answer: bool = False
    passed: bool = False
    failures: list[str] = field(default_factory=list)
    answer_correct: bool | None = None
    retrieval_hit: bool | None = None
    reciprocal_rank: float | None = None
    evidence_rank: int | None = None
    citation_correct: bool | None = None
    sentences: int = 0
    uncited_sentences: int = 0
    citations: list[dict[str, Any]] = field(default_factory=list)
    retrieved_ids: list[str] = field(default_factory=list)
    retrieved_sources: list[str] = field(default_factory=list)
    latency_s: float = 0.0
    error: str | None = None

    @property
    def answered(self) -> bool:
        """Not refused, not empty, no error: the system asserted something."""
        return not self.refused and not self.empty_answer and self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_MARKER_GROUP = r"\[\d+(?:\s*[,;]\s*\d+)*\]"
_TRAILING_MARKERS = re.compile(r"([.!?…][\"'”’)]*)((?:\s*" + _MARKER_GROUP + r")+)")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)]*\s+|\n+")
_ABBREVIATION = re.compile(
    r"(?:\b(?:co|corp|inc|ltd|llc|plc|mr|mrs|ms|dr|prof|st|jr|sr|vs|etc|no|fig|approx|e\.g|"
    r"i\.e|u\.s|u\.k|u\.n|e\.u)|\b[A-Z])\.$",
    re.IGNORECASE,
)


def answer_sentences(text: str) -> list[tuple[str, list[int]]]:
    """Sentences of an answer with the [n] markers each carries.

    Markers count for the sentence they follow or end ("… 2023. [1]" and "… 2023 [1]." alike);
    no split is made after common abbreviations ("Co.", "Ltd.", "U.S.") or initials."""
    text = _TRAILING_MARKERS.sub(lambda m: m.group(2) + m.group(1), text or "")
    pieces: list[str] = []
    cursor = 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[cursor : match.end()].rstrip()
        if not match.group().strip() or not _ABBREVIATION.search(candidate):
            pieces.append(text[cursor : match.end()])
            cursor = match.end()
    pieces.append(text[cursor:])
    sentences: list[tuple[str, list[int]]] = []
    for piece in pieces:
        markers = [
            int(number)
            for group in re.findall(_MARKER_GROUP, piece)
            for number in re.findall(r"\d+", group)
        ]
        clean = " ".join(re.sub(r"\s*" + _MARKER_GROUP, "", piece).split())
        if not re.search(r"[^\W_]", clean):
            if sentences and markers:
                sentences[-1][1].extend(markers)
            continue
        sentences.append((clean, markers))
    return sentences


def count_sentences(answer: Answer) -> tuple[int, int]:
    """(answer sentences, sentences without a [n] marker that points at a citation)."""
    valid = {citation.n for citation in answer.citations}
    pieces = answer_sentences(answer.answer)
    uncited = sum(1 for _, markers in pieces if not any(n in valid for n in markers))
    return len(pieces), uncited


def score_item(
    item: EvalItem, answer: Answer | None, latency_s: float, error: str | None = None
) -> ItemResult:
    """Check one answer against its case. ``answer`` None (with ``error``): the ask failed."""
    case = item.case
    result = ItemResult(
        id=item.id,
        question=case.question,
        answerable=case.answerable,
        conversation=item.conversation,
        turn=item.turn,
        expected=case.expected,
        evidence=case.evidence,
        source=case.source,
        latency_s=round(latency_s, 4),
        error=error,
    )
    if answer is not None:
        result.standalone_question = answer.standalone_question
        result.answer = answer.answer
        result.refused = bool(answer.refused)
        result.empty_answer = not answer.answer.strip()
        result.citations = [citation.model_dump(mode="json") for citation in answer.citations]
        result.retrieved_ids = [chunk.chunk_id for chunk in answer.retrieved]
        result.retrieved_sources = [chunk.source for chunk in answer.retrieved]
    else:
        result.empty_answer = True
    failures = result.failures
    if error:
        failures.append(f"error: {error}")

    if case.answerable:
        if result.refused:
            failures.append("refused an answerable question")
        elif result.empty_answer and not error:
            failures.append("empty answer")
        if case.expected is not None:
            missing = (
                case.expected
                if not result.answered
                else missing_groups(result.answer, case.expected)
            )
            result.answer_correct = result.answered and not missing
            if result.answered and missing:
                shown = "; ".join(" | ".join(group) for group in missing)
                failures.append(f"answer lacks: {shown}")
    elif not result.refused:
        failures.append("answered an unanswerable question")

    if case.evidence is not None:
        rank = _evidence_rank(answer, case.evidence, case.source) if answer else None
        result.evidence_rank = rank
        result.retrieval_hit = rank is not None
        result.reciprocal_rank = 1.0 / rank if rank else 0.0
        if rank is None:
            failures.append("evidence not in the retrieved chunks")
        if result.answered and answer is not None:
            result.citation_correct = _cites_evidence(answer, case.evidence, case.source)
            if not result.citation_correct:
                failures.append("no citation points at the evidence")

    if result.answered and answer is not None:
        result.sentences, result.uncited_sentences = count_sentences(answer)
        if result.uncited_sentences:
            failures.append(f"{result.uncited_sentences} sentence(s) without a citation")

    result.passed = not failures
    return result


def _evidence_rank(answer: Answer, evidence: list[str], source: str | None) -> int | None:
    """1-based rank of the first retrieved chunk holding the evidence, or None."""
    for rank, chunk in enumerate(answer.retrieved, start=1):
        if source_matches(chunk.source, source) and contains_evidence(chunk.text, evidence):
            return rank
    return None


def _cites_evidence(answer: Answer, evidence: list[str], source: str | None) -> bool:
    """Does any cited chunk (the whole chunk, not only the quoted span) hold the evidence?"""
    texts = {chunk.chunk_id: chunk.text for chunk in answer.retrieved}
    for citation in answer.citations:
        text = texts.get(citation.chunk_id) or citation.chunk_text or citation.quote
        if source_matches(citation.source, source) and contains_evidence(text, evidence):
            return True
    return False


# Metrics ---------------------------------------------------------------------------------------

METRICS: tuple[str, ...] = (
    "answer_accuracy",
    "retrieval_hit_rate",
    "mrr",
    "citation_accuracy",
    "uncited_sentence_rate",
    "refusal_accuracy",
    "false_refusal_rate",
    "latency_p50_s",
    "latency_p95_s",
    "n_questions",
)
LOWER_IS_BETTER = frozenset(
    {"uncited_sentence_rate", "false_refusal_rate", "latency_p50_s", "latency_p95_s"}
)
RATE_METRICS = tuple(m for m in METRICS if not m.startswith(("latency", "n_")))


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), None for no values."""
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 4)


def compute_metrics(results: Sequence[ItemResult]) -> tuple[dict[str, Any], dict[str, int]]:
    """(metrics, support): each metric's value (None when no item is eligible) and how many
    items it was computed over."""
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    with_expected = [r for r in answerable if r.answer_correct is not None]
    with_evidence = [r for r in results if r.retrieval_hit is not None]
    cited = [r for r in results if r.citation_correct is not None]
    answered = [r for r in results if r.answered and r.sentences]
    sentences = sum(r.sentences for r in answered)
    latencies = [r.latency_s for r in results if r.error is None]
    metrics: dict[str, Any] = {
        "answer_accuracy": _mean(float(bool(r.answer_correct)) for r in with_expected),
        "retrieval_hit_rate": _mean(float(bool(r.retrieval_hit)) for r in with_evidence),
        "mrr": _mean(r.reciprocal_rank or 0.0 for r in with_evidence),
        "citation_accuracy": _mean(float(bool(r.citation_correct)) for r in cited),
        "uncited_sentence_rate": (
            round(sum(r.uncited_sentences for r in answered) / sentences, 4) if sentences else None
        ),
        "refusal_accuracy": _mean(float(r.refused) for r in unanswerable),
        "false_refusal_rate": _mean(float(r.refused) for r in answerable),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "n_questions": len(results),
    }
    support = {
        "answer_accuracy": len(with_expected),
        "retrieval_hit_rate": len(with_evidence),
        "mrr": len(with_evidence),
        "citation_accuracy": len(cited),
        "uncited_sentence_rate": sentences,
        "refusal_accuracy": len(unanswerable),
        "false_refusal_rate": len(answerable),
        "latency_p50_s": len(latencies),
        "latency_p95_s": len(latencies),
        "n_questions": len(results),
    }
    return metrics, support


# Running a question set ------------------------------------------------------------------------

ItemCallback = Callable[[int, int, ItemResult], None]


@dataclass
class EvalRun:
    """A finished evaluation: ``to_dict`` is the ``rag eval --json`` file."""

    metrics: dict[str, Any]
    support: dict[str, int]
    items: list[ItemResult]
    config: dict[str, Any]

    @property
    def failed(self) -> list[ItemResult]:
        return [item for item in self.items if not item.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": dict(self.metrics),
            "support": dict(self.support),
            "items": [item.to_dict() for item in self.items],
            "config": dict(self.config),
        }


CONFIG_FIELDS = (
    "index_dir", "collection", "chroma_url", "embedding_model", "chunk_size", "chunk_overlap",
    "k", "fetch_k", "fusion", "rrf_k", "dense_weight", "bm25_weight", "answer_threshold", "llm",
    "llm_max_tokens", "llm_context_tokens",
)  # fmt: skip


def settings_summary(settings: Settings) -> dict[str, Any]:
    """The settings that decide results (never credentials), JSON-ready."""
    data = settings.model_dump(mode="json")
    return {key: data.get(key) for key in CONFIG_FIELDS}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rag-offline")
    except PackageNotFoundError:
        return "unknown"


def run_evaluation(
    question_set: QuestionSet,
    bot: RAG,
    *,
    k: int | None = None,
    llm: str | None = None,
    set_path: str | None = None,
    on_item: ItemCallback | None = None,
    warm_up: bool = True,
) -> EvalRun:
    """Ask every question (conversations turn by turn, with history) and score the answers.

    Latency is each ask's wall time; with ``warm_up`` one untimed question is asked first so
    that loading the models is not counted.

    A question the pipeline rejects (QuestionError) is recorded as a failed item; any other
    error (index missing, LLM unavailable) stops the run.
    """
    from rag.answer import QuestionError

    if bot.searcher.store.count() == 0:
        where = bot.settings.chroma_url or bot.settings.index_dir
        raise EvaluationError(
            f"the collection '{bot.settings.collection}' at {where} is empty: "
            "ingest your documents first (rag ingest PATH)"
        )
    started_at = datetime.now(UTC)
    began = time.perf_counter()
    items = question_set.items()
    total = len(items)
    warm_up_s = 0.0
    if warm_up and items:
        # Models load lazily on first use: one untimed question keeps loading out of latency.
        with contextlib.suppress(QuestionError):
            bot.ask(items[0].case.question, k=k, llm=llm)
        warm_up_s = time.perf_counter() - began
    results: list[ItemResult] = []
    history: list[tuple[str, str]] = []
    conversation: str | None = None
    for item in items:
        if item.conversation != conversation:
            history, conversation = [], item.conversation
        asked = time.perf_counter()
        answer, error = None, None
        try:
            answer = bot.ask(
                item.case.question, list(history) if item.conversation else None, k=k, llm=llm
            )
        except QuestionError as problem:
            error = str(problem)
        latency = time.perf_counter() - asked
        if item.conversation:
            history.append((item.case.question, answer.answer if answer else ""))
        result = score_item(item, answer, latency, error)
        results.append(result)
        if on_item is not None:
            on_item(len(results), total, result)
    metrics, support = compute_metrics(results)
    settings = bot.settings.with_overrides(k=k, llm=llm)
    config = {
        "question_set": set_path,
        "name": question_set.name,
        **settings_summary(settings),
        "llm_label": results_llm_label(bot, llm),
        "rag_version": _version(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - began, 3),
        "warm_up_s": round(warm_up_s, 3),
    }
    return EvalRun(metrics, support, results, config)


def results_llm_label(bot: RAG, llm: str | None) -> str:
    """The LLM label answers carry (e.g. 'local', 'extractive', 'ollama:llama3.2')."""
    from rag.llm import parse_spec

    return parse_spec(llm).label if llm else bot.default_spec.label


# Comparing runs and gating ----------------------------------------------------------------------


def load_run(path: Path | str) -> dict[str, Any]:
    """A previous ``rag eval --json`` file (checked to hold metrics and items)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluationError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise EvaluationError(f"{path}: not a readable JSON file: {error}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("metrics"), dict)
        or not isinstance(data.get("items"), list)
    ):
        raise EvaluationError(f"{path}: not a 'rag eval --json' result (no metrics/items)")
    return data


@dataclass
class MetricDelta:
    metric: str
    previous: float | None
    current: float | None

    @property
    def delta(self) -> float | None:
        if self.previous is None or self.current is None:
            return None
        return round(self.current - self.previous, 4)

    @property
    def verdict(self) -> Literal["better", "worse", "same", "n/a"]:
        delta = self.delta
        if delta is None:
            return "n/a"
        if abs(delta) < 1e-9 or self.metric == "n_questions":
            return "same" if abs(delta) < 1e-9 else "n/a"
        improved = delta < 0 if self.metric in LOWER_IS_BETTER else delta > 0
        return "better" if improved else "worse"


@dataclass
class Comparison:
    """Metric deltas and items whose pass/fail flipped between two runs."""

    deltas: list[MetricDelta]
    now_failing: list[tuple[str, str]]  # (id, question)
    now_passing: list[tuple[str, str]]
    only_previous: list[str]
    only_current: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": {
                d.metric: {"previous": d.previous, "current": d.current, "delta": d.delta}
                for d in self.deltas
            },
            "now_failing": [item_id for item_id, _ in self.now_failing],
            "now_passing": [item_id for item_id, _ in self.now_passing],
            "only_previous": self.only_previous,
            "only_current": self.only_current,
        }


def compare_runs(previous: dict[str, Any], current: dict[str, Any]) -> Comparison:
    """Compare two ``rag eval --json`` objects (previous first)."""
    deltas = [
        MetricDelta(metric, previous["metrics"].get(metric), current["metrics"].get(metric))
        for metric in METRICS
    ]
    before = {item["id"]: item for item in previous["items"] if isinstance(item, dict)}
    after = {item["id"]: item for item in current["items"] if isinstance(item, dict)}
    now_failing, now_passing = [], []
    for item_id, item in after.items():
        old = before.get(item_id)
        if old is None or bool(old.get("passed")) == bool(item.get("passed")):
            continue
        entry = (item_id, str(item.get("question", "")))
        (now_passing if item.get("passed") else now_failing).append(entry)
    return Comparison(
        deltas,
        now_failing,
        now_passing,
        only_previous=[item_id for item_id in before if item_id not in after],
        only_current=[item_id for item_id in after if item_id not in before],
    )


@dataclass(frozen=True)
class Bound:
    """A CI gate: ``metric`` must be at least (``under``) or at most (``over``) ``value``."""

    metric: str
    value: float
    kind: Literal["under", "over"]


def parse_bounds(specs: Iterable[str], kind: Literal["under", "over"]) -> list[Bound]:
    """Parse 'METRIC=VALUE' (comma-separated lists too). Raises ValueError with the reason."""
    bounds = []
    for spec in specs:
        for part in filter(None, (piece.strip() for piece in spec.split(","))):
            metric, sep, raw = part.partition("=")
            metric = metric.strip()
            if not sep:
                raise ValueError(f"{part!r}: expected METRIC=VALUE, e.g. answer_accuracy=0.8")
            if metric not in METRICS:
                raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{part!r}: {raw.strip()!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"{part!r}: the bound must be a finite number")
            if kind == "under" and metric in LOWER_IS_BETTER:
                raise ValueError(
                    f"{metric} is lower-is-better: use --fail-over {metric}={raw.strip()}"
                )
            if kind == "over" and metric not in LOWER_IS_BETTER:
                raise ValueError(
                    f"{metric} is higher-is-better: use --fail-under {metric}={raw.strip()}"
                )
            bounds.append(Bound(metric, value, kind))
    return bounds


def check_bounds(metrics: dict[str, Any], bounds: Iterable[Bound]) -> list[str]:
    """One message per violated bound; a null metric violates any bound on it."""
    problems = []
    for bound in bounds:
        value = metrics.get(bound.metric)
        if value is None:
            problems.append(f"{bound.metric} is null (no eligible items), cannot check it")
        elif bound.kind == "under" and value < bound.value:
            problems.append(f"{bound.metric} = {value:g} is below {bound.value:g}")
        elif bound.kind == "over" and value > bound.value:
            problems.append(f"{bound.metric} = {value:g} is above {bound.value:g}")
    return problems


# BEIR retrieval evaluation ----------------------------------------------------------------------

RetrievalMode = Literal["dense", "bm25", "hybrid"]
MODES: tuple[RetrievalMode, ...] = ("dense", "bm25", "hybrid")
RECALL_DEPTH = 100


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: sum of gain / log2(rank + 1), ranks from 1."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def ndcg_at_k(ranking: Sequence[str], relevance: dict[str, int], k: int) -> float:
    """nDCG@k with linear gains (the relevance grade), as trec_eval and BEIR compute it.

    The ideal ranking orders every judged relevant document (grade > 0) by grade."""
    ideal = sorted((grade for grade in relevance.values() if grade > 0), reverse=True)[:k]
    best = dcg(ideal)
    if best == 0:
        return 0.0
    gains = [max(relevance.get(doc_id, 0), 0) for doc_id in ranking[:k]]
    return dcg(gains) / best


def recall_at_k(ranking: Sequence[str], relevance: dict[str, int], k: int) -> float:
    """Share of the relevant documents (grade > 0) found in the top k."""
    relevant = {doc_id for doc_id, grade in relevance.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranking[:k])) / len(relevant)


def mrr_at_k(ranking: Sequence[str], relevance: dict[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top k (0 if none)."""
    for rank, doc_id in enumerate(ranking[:k], start=1):
        if relevance.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


@dataclass
class BeirDataset:
    """A BEIR dataset: corpus {id: (title, text)}, queries {id: text}, qrels {query id:
    {doc id: grade}} (only queries with a relevant document)."""

    name: str
    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as error:
        raise EvaluationError(f"{path}: cannot read: {error.strerror or error}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise EvaluationError(f"{path}, line {number}: invalid JSON: {error.msg}") from None
            if not isinstance(data, dict) or "_id" not in data:
                raise EvaluationError(f"{path}, line {number}: expected an object with '_id'")
            yield number, data


def load_beir(folder: Path | str, split: str = "test") -> BeirDataset:
    """Read corpus.jsonl, queries.jsonl and qrels/<split>.tsv; only queries with judgments."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: no such BEIR dataset folder")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise EvaluationError(
            f"{qrels_path}: missing (splits here: {', '.join(available) or 'none'})"
        )
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t") if "\t" in line else line.split()
        if not line.strip() or (number == 1 and fields[-1].strip().lower() == "score"):
            continue
        if len(fields) < 3:
            raise EvaluationError(f"{qrels_path}, line {number}: expected query-id corpus-id score")
        try:
            grade = int(float(fields[-1]))
        except ValueError:
            raise EvaluationError(
                f"{qrels_path}, line {number}: score {fields[-1]!r} is not a number"
            ) from None
        qrels.setdefault(fields[0].strip(), {})[fields[1].strip()] = grade
    qrels = {qid: grades for qid, grades in qrels.items() if any(g > 0 for g in grades.values())}
    queries = {
        str(data["_id"]): str(data.get("text") or "")
        for _, data in _read_jsonl(folder / "queries.jsonl")
        if str(data["_id"]) in qrels
    }
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise EvaluationError(
            f"{folder}: {len(missing)} judged queries missing from queries.jsonl "
            f"(e.g. {', '.join(missing[:3])})"
        )
    corpus = {
        str(data["_id"]): (str(data.get("title") or ""), str(data.get("text") or ""))
        for _, data in _read_jsonl(folder / "corpus.jsonl")
    }
    if not corpus:
        raise EvaluationError(f"{folder}/corpus.jsonl holds no documents")
    name = folder.resolve().name
    return BeirDataset(name, corpus, queries, qrels)


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def doc_filename(doc_id: str) -> str:
    """The cache file of a corpus document: '<id>.txt' for plain ids, else a hash."""
    import hashlib

    if _SAFE_NAME.match(doc_id) and not doc_id.lower().endswith(".txt"):
        return f"{doc_id}.txt"
    return "h-" + hashlib.sha256(doc_id.encode()).hexdigest()[:24] + ".txt"


def beir_collection_name(dataset: str) -> str:
    """'beir-<dataset>' made safe for Chroma."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-._") or "dataset"
    return f"beir-{slug}"[:60].rstrip("-._")


def beir_cache_dir(settings: Settings, dataset: str) -> Path:
    """Where a dataset's documents are written as text files before ingesting."""
    base = (
        settings.data_dir if settings.data_dir is not None else settings.index_dir.parent / "data"
    )
    return base / "beir" / beir_collection_name(dataset).removeprefix("beir-")


def write_corpus_files(dataset: BeirDataset, folder: Path) -> dict[str, str]:
    """Write each document as '<title>\\n\\n<text>' (only files whose content changed, so a
    re-run is incremental); remove files of documents no longer in the corpus.

    Returns {file name: document id} for the documents written (empty ones are skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, str] = {}
    for doc_id, (title, text) in dataset.corpus.items():
        body = "\n\n".join(part.strip() for part in (title, text) if part.strip())
        if not body:
            continue
        name = doc_filename(doc_id)
        if name in by_file:
            raise EvaluationError(f"documents {by_file[name]!r} and {doc_id!r} share a file name")
        by_file[name] = doc_id
        path = folder / name
        content = body + "\n"
        try:
            if path.read_text(encoding="utf-8") == content:
                continue
        except (OSError, UnicodeDecodeError):
            pass
        path.write_text(content, encoding="utf-8")
    for stale in folder.glob("*.txt"):
        if stale.name not in by_file:
            stale.unlink()
    return by_file


def rank_documents(
    searcher: Any, query: str, mode: RetrievalMode, depth: int, total_chunks: int, fetch: int
) -> list[str]:
    """Document sources ranked by their best chunk: at least ``depth`` of them when the
    collection has that many (the chunk fetch depth doubles until it gets there)."""
    fetch = max(fetch, depth)
    while True:
        chunks = searcher.search(query, k=fetch, mode=mode, fetch_k=fetch).chunks
        ranked: list[str] = []
        seen: set[str] = set()
        for chunk in chunks:
            if chunk.source not in seen:
                seen.add(chunk.source)
                ranked.append(chunk.source)
        if len(ranked) >= depth or len(chunks) < fetch or fetch >= total_chunks:
            return ranked[:depth]
        fetch = min(fetch * 2, total_chunks)


@dataclass
class BeirResult:
    """``to_dict`` is the ``rag eval-retrieval --json`` file."""

    dataset: str
    split: str
    k: int
    n_queries: int
    metrics: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, dict[str, float]]]
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_beir(
    folder: Path | str,
    settings: Settings,
    *,
    split: str = "test",
    k: int = 10,
    ingest_progress: Callable[[IngestProgress], None] | None = None,
    on_query: Callable[[int, int], None] | None = None,
) -> BeirResult:
    """Ingest a BEIR dataset into ``beir-<name>`` (incrementally) and score dense, BM25 and
    hybrid retrieval of its judged queries: nDCG@k, Recall@100, MRR@k (document rank = rank of
    its best chunk; retrieval settings as configured)."""
    from rag.embeddings import get_embedder
    from rag.ingest import ingest
    from rag.retrieval import HybridSearcher

    began = time.perf_counter()
    dataset = load_beir(folder, split)
    beir_settings = settings.with_overrides(collection=beir_collection_name(dataset.name))
    cache = beir_cache_dir(settings, dataset.name)
    by_file = write_corpus_files(dataset, cache)
    report: IngestReport = ingest([cache], beir_settings, progress=ingest_progress)
    if not report.ok:
        failed = "; ".join(f"{f.path}: {f.error}" for f in report.failed[:3])
        raise EvaluationError(f"ingesting {dataset.name} failed: {failed}")
    ingested_s = time.perf_counter() - began
    searcher = HybridSearcher(beir_settings, get_embedder(beir_settings))
    total_chunks = searcher.store.count()
    depth = max(RECALL_DEPTH, k)
    fetch = max(beir_settings.fetch_k, 3 * depth)
    names = {"ndcg": f"ndcg@{k}", "recall": f"recall@{RECALL_DEPTH}", "mrr": f"mrr@{k}"}
    per_query: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in MODES}
    search_s = dict.fromkeys(MODES, 0.0)
    query_ids = sorted(dataset.queries, key=_natural_key)
    for done, query_id in enumerate(query_ids, start=1):
        relevance = dataset.qrels[query_id]
        for mode in MODES:
            started = time.perf_counter()
            ranked_files = rank_documents(
                searcher, dataset.queries[query_id], mode, depth, total_chunks, fetch
            )
            search_s[mode] += time.perf_counter() - started
            ranking = [by_file.get(name, name) for name in ranked_files]
            per_query[mode][query_id] = {
                names["ndcg"]: round(ndcg_at_k(ranking, relevance, k), 6),
                names["recall"]: round(recall_at_k(ranking, relevance, RECALL_DEPTH), 6),
                names["mrr"]: round(mrr_at_k(ranking, relevance, k), 6),
            }
        if on_query is not None:
            on_query(done, len(query_ids))
    metrics = {
        mode: {
            name: round(float(np.mean([scores[name] for scores in per_query[mode].values()])), 4)
            for name in names.values()
        }
        for mode in MODES
    }
    config = {
        **settings_summary(beir_settings),
        "dataset_dir": str(Path(folder)),
        "cache_dir": str(cache),
        "documents": len(by_file),
        "chunks": total_chunks,
        "chunk_fetch_depth": fetch,
        "ingest": report.to_dict(),
        "ingest_s": round(ingested_s, 2),
        "search_s": {mode: round(seconds, 2) for mode, seconds in search_s.items()},
        "rag_version": _version(),
    }
    return BeirResult(dataset.name, split, k, len(query_ids), metrics, per_query, config)


def _natural_key(value: str) -> tuple[int, int | str]:
    return (0, int(value)) if value.isdigit() else (1, value)
