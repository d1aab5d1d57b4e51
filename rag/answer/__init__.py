"""Answering: condense → retrieve → read → write → check, a LangChain chain.

``from rag.answer import ask, RAG, Answer`` is the public API; the modules are
``models`` (the JSON contract and stream events), ``text``, ``condense`` (follow-ups),
``state`` (what a question carries through the chain), ``prompt`` (the prompt template),
``verify`` (support of a sentence by a source span), ``citations`` (answer text and citations),
``reading`` (the reader's ranking of retrieved sentences and its in-context re-read),
``check`` (the sentence-by-sentence check step) and ``pipeline`` (RAG and its chain).
"""

from rag.answer.check import (
    MAX_EXTRACTIVE_SENTENCES,
    MIN_SUPPORT,
    STRICT_MIN_SUPPORT,
    CheckAnswer,
    refusal_text,
)
from rag.answer.citations import Composer, compose_answer, direct_answer, retrieved_info
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
from rag.answer.pipeline import RAG, ask, get_rag
from rag.answer.prompt import ANSWER_PROMPT, SYSTEM_PROMPT, numbered_context
from rag.answer.reading import MAX_READER_CANDIDATES, SentenceReader
from rag.answer.state import Turn
from rag.answer.text import clean_question, content_terms, numbers_in
from rag.answer.verify import Support, Verifier, adds_information, new_words, split_answer

__all__ = [
    "ANSWER_PROMPT",
    "MAX_EXTRACTIVE_SENTENCES",
    "MAX_READER_CANDIDATES",
    "MIN_SUPPORT",
    "RAG",
    "REFUSAL_PREFIX",
    "STRICT_MIN_SUPPORT",
    "SYSTEM_PROMPT",
    "Answer",
    "Candidate",
    "CheckAnswer",
    "Citation",
    "Composer",
    "History",
    "QuestionError",
    "RetrievedInfo",
    "SentenceReader",
    "StreamEvent",
    "Support",
    "Timings",
    "Turn",
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
    "numbered_context",
    "numbers_in",
    "refusal_text",
    "retrieved_info",
    "split_answer",
    "text_of",
]
