"""Scoring one answer: expected-answer matching, evidence, citations and uncited sentences."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rag import markers
from rag.answer.verify import split_answer
from rag.evaluation.questions import EvalItem, ExpectedGroups, normalise

if TYPE_CHECKING:
    from rag.answer import Answer


# Matching ------------------------------------------------------------------------------------


def matches_alternative(answer: str, alternative: str) -> bool:
    """Does ``alternative`` occur in ``answer`` (both normalised), starting at a word boundary
    and, if it ends in a digit, ending at one? '[n]' citation markers are ignored."""
    haystack = normalise(markers.strip(answer))
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


def answer_sentences(text: str) -> list[tuple[str, list[int]]]:
    """Sentences of an answer with the [n] markers each carries, split as the answer checker
    splits them (``rag.answer.split_answer``: one sentence splitter, one marker format).

    Markers count for the sentence they follow or end ("… 2023. [1]" and "… 2023 [1]." alike);
    no split is made after common abbreviations ("Co.", "Ltd.", "U.S.") or initials."""
    return [(" ".join(clean.split()), cited) for clean, cited in split_answer(text or "")]


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
