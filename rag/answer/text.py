"""Text helpers shared by answering: words, numbers, content terms, question cleaning."""

from __future__ import annotations

import re
import unicodedata

from rag.answer.models import QuestionError
from rag.terms import terms

# Text helpers ----------------------------------------------------------------------------

WORD = re.compile(r"[^\W_]+(?:[.,'’][^\W_]+)*", re.UNICODE)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
REFUSAL_PHRASES = re.compile(
    r"\b(i (do not|don't|dont) know|not (mentioned|provided|stated|specified|included) in|"
    r"(documents?|sources?|context|text) (do(es)? not|don't|doesn't) (say|mention|contain|"
    r"provide|specify|state)|no (information|mention)|cannot (answer|find|determine)|"
    r"unable to (answer|find|determine))\b",
    re.IGNORECASE,
)


def content_terms(text: str) -> list[str]:
    """The words that carry content: the index terms BM25 uses (rag.terms), numbers aside
    (those are compared exactly, by ``numbers_in``)."""
    return [term for term in terms(text) if not term.isdigit()]


def numbers_in(text: str) -> set[str]:
    return {number.replace(",", "") for number in NUMBER.findall(text)}


def clean_question(question: str, max_chars: int) -> str:
    """Normalise a user question: control characters removed, whitespace collapsed, length
    capped at a word boundary. Raises QuestionError when nothing is left."""
    if question is None:
        raise QuestionError("the question is empty")
    text = unicodedata.normalize("NFC", str(question))
    text = _ANSI_ESCAPE.sub(" ", text)
    text = _CONTROL.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        raise QuestionError("the question is empty: type a question about your documents")
    if not WORD.search(text):
        raise QuestionError("the question has no words in it: type a question about your documents")
    if len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars].rstrip()
    return text
