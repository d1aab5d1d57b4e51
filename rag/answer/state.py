"""What one question carries through the chain (condense → retrieve → read → write → check)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel

from rag.answer.condense import History
from rag.answer.models import Candidate
from rag.llm import LLMSpec
from rag.retrieval import RetrievedChunk


@dataclass
class Turn:
    """One question on its way to an answer; each step of the chain fills in its part.

    The chain passes ``{"turn": Turn}`` between steps (the write step adds ``"draft"``), so
    LangChain's own ``RunnablePassthrough.assign`` can stream the draft next to it."""

    question: str
    history: History | None
    k: int
    sources: list[str] | None
    spec: LLMSpec
    model: BaseChatModel | None = None
    drafts: bool = False  # also stream the raw, unchecked draft ("token" events)
    standalone: str = ""
    chunks: list[RetrievedChunk] = field(default_factory=list)
    best_dense: float = 0.0  # the best dense similarity of the question in the collection
    # For a question condensed with the conversation: what the question as asked retrieves.
    own_chunks: list[RetrievedChunk] = field(default_factory=list)
    own_best_dense: float = 0.0
    ranked: list[Candidate] = field(default_factory=list)
    context_score: float = float("-inf")  # the best top sentences' score read in context
    refusal: str | None = None  # why the documents are taken not to answer, when they are not
    context: str = ""  # the numbered sources the model is shown
    started: float = field(default_factory=time.perf_counter)
    load_s: float = 0.0
    retrieve_s: float = 0.0
    read_done: float = 0.0

    @property
    def writes(self) -> bool:
        """Whether a model writes a draft for this turn."""
        return self.model is not None and self.refusal is None


def turn_of(state: Any) -> Turn:
    """The turn inside a chain state (``{"turn": Turn, ...}``)."""
    turn = state["turn"] if isinstance(state, dict) else state
    if not isinstance(turn, Turn):
        raise TypeError(f"expected a chain state holding a Turn, got {type(state).__name__}")
    return turn
