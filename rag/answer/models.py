"""The answer's data model: the ``rag ask --json`` contract and the stream events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from rag.config import RagError

REFUSAL_PREFIX = "The documents don't say"


class QuestionError(RagError):
    """The question cannot be asked (empty, or nothing left after cleaning)."""


# Public data model (the `rag ask --json` contract) -------------------------------------------


class Citation(BaseModel):
    n: int
    source: str
    chunk_id: str
    page: int | None = None
    start: int = Field(description="Start of the supporting span, as a char offset in the source.")
    end: int
    quote: str = Field(description="The exact supporting span of the source text.")
    section: str = Field(
        "",
        description='The headings of the section the quote is in ("Fleet guide › Refuelling" '
        "minus the document title), or empty.",
    )
    chunk_start: int = Field(0, exclude=True)
    chunk_index: int = Field(0, exclude=True, description="Position of the chunk in its file.")
    chunk_text: str = Field("", exclude=True)
    title: str = Field("", exclude=True)

    def location(self) -> str:
        """Where the quote is, for people: "fleet.md › Refuelling", "report.pdf, page 3"."""
        place = f"{self.source} › {self.section}" if self.section else self.source
        return f"{place}, page {self.page}" if self.page is not None else place


class RetrievedInfo(BaseModel):
    chunk_id: str
    source: str
    score: float
    text: str
    page: int | None = Field(None, exclude=True)
    title: str = Field("", exclude=True)
    dense_score: float | None = Field(None, exclude=True)


class Timings(BaseModel):
    load_s: float = Field(0.0, description="Loading models and the keyword index (first use).")
    retrieve_s: float = 0.0
    generate_s: float = 0.0
    total_s: float = 0.0


class Answer(BaseModel):
    question: str
    standalone_question: str
    answer: str
    refused: bool
    citations: list[Citation] = Field(default_factory=list)
    retrieved: list[RetrievedInfo] = Field(default_factory=list)
    llm: str
    timings: Timings = Field(default_factory=Timings)
    draft: str = Field("", exclude=True, description="The unverified model output.")
    mode: str = Field("", exclude=True, description="generated | extractive | refused")
    direct: str = Field("", exclude=True, description="The short answer the text leads with.")

    def to_dict(self) -> dict[str, Any]:
        """Exactly the ``rag ask --json`` object."""
        return self.model_dump(mode="json")


@dataclass
class StreamEvent:
    """One step of an answer being made.

    - ``stage``: what is happening now (``text``: "searching", "writing");
    - ``sentence``: checked answer text to append (with its [n] and leading space): the
      sentences streamed are always a prefix of the final answer;
    - ``token``: raw, unchecked draft text (only when asked for with ``drafts=True``);
    - ``final``: the checked :class:`Answer` (``answer``)."""

    kind: Literal["stage", "sentence", "token", "final"]
    text: str = ""
    answer: Answer | None = None


@dataclass(frozen=True)
class Candidate:
    """A sentence of a retrieved chunk (a lead-in with the list it introduces), as the reader
    scored it for the question. Offsets are within the chunk's text. ``score`` ranks: the
    calibrated combination of ``reader_score``, ``cosine`` and the chunk's place
    (``rag.reader.Calibration.sentence_score``)."""

    score: float
    chunk_index: int
    start: int
    end: int
    answer_start: int  # the reader's short answer inside the sentence
    answer_end: int
    reader_score: float = 0.0  # the reader's own score for the sentence
    cosine: float = 0.0  # the sentence's embedding similarity to the question
    # Among the nearest by similarity (what the answer/refuse decision reads; ``select``)
    decides: bool = True
