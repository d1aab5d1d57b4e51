"""Answering: condense → retrieve → read → generate → verify → compose, one module each.

``from rag.answer import ask, RAG, Answer`` is the public API; the modules are
``models`` (the JSON contract), ``text``, ``condense`` (follow-ups), ``verify`` (support of a
sentence by a source span), ``citations`` (answer text and citations) and ``pipeline`` (RAG).
"""

from rag.answer.citations import compose_answer, direct_answer, retrieved_info
from rag.answer.condense import (
    History,
    condense_heuristic,
    condense_with_llm,
    history_turns,
    is_follow_up,
    text_of,
)
from rag.answer.models import (
    REFUSAL_PREFIX,
    Answer,
    Candidate,
    Citation,
    QuestionError,
    RetrievedInfo,
    StreamEvent,
    Timings,
)
from rag.answer.pipeline import (
    LOCAL_CONTEXT_CHARS,
    MAX_EXTRACTIVE_SENTENCES,
    MAX_READER_CANDIDATES,
    MIN_SUPPORT,
    RAG,
    SYSTEM_PROMPT,
    WEAK_MODEL_MIN_SUPPORT,
    ask,
    get_rag,
    refusal_text,
)
from rag.answer.text import clean_question, content_terms, numbers_in
from rag.answer.verify import Support, Verifier, adds_information, new_words, split_answer

__all__ = [
    "LOCAL_CONTEXT_CHARS",
    "MAX_EXTRACTIVE_SENTENCES",
    "MAX_READER_CANDIDATES",
    "MIN_SUPPORT",
    "RAG",
    "REFUSAL_PREFIX",
    "SYSTEM_PROMPT",
    "WEAK_MODEL_MIN_SUPPORT",
    "Answer",
    "Candidate",
    "Citation",
    "History",
    "QuestionError",
    "RetrievedInfo",
    "StreamEvent",
    "Support",
    "Timings",
    "Verifier",
    "adds_information",
    "ask",
    "clean_question",
    "compose_answer",
    "condense_heuristic",
    "condense_with_llm",
    "content_terms",
    "direct_answer",
    "get_rag",
    "history_turns",
    "is_follow_up",
    "new_words",
    "numbers_in",
    "refusal_text",
    "retrieved_info",
    "split_answer",
    "text_of",
]
