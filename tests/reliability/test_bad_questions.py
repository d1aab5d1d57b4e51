"""Issue 7, bad questions: through the Python API and the real `rag ask --json --llm extractive`.
Each gets a clear message or a proper answer/refusal, never a traceback; nothing indexed is lost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.answer import RAG, Answer, QuestionError
from rag.config import load_settings
from rag.ingest import index_stats, ingest

DOCS = {
    "ferry.txt": (
        "Merren Ferry Timetable\n\nThe ferry to Merren leaves Valdoria at 8:00 and at 16:00 every "
        "day. The crossing takes ninety minutes. Tickets cost 12 euros for adults."
    ),
    "harbour.txt": (
        "Valdoria Harbour\n\nThe harbour handles forty container ships a week. Its lighthouse "
        "was rebuilt in 1911 after a storm destroyed the old tower."
    ),
}

LONG = ("When does the ferry to Merren leave Valdoria in the morning? " * 400)[:20_000]
REFUSED_OR_ERROR = {
    "empty": "",
    "whitespace": " \t\n \u3000 \n",
    "punctuation": "?!?... ;:;, --- !!! ¿¡",
    "control characters only": "\x00\x01\x02\x1b\x7f",
    "emoji only": "⛴️ ⏰ ❓",
}
ANSWERABLE = {
    "20,000 characters": LONG,
    "control characters": "When\x00 does the\x1b ferry\x07 to Merren\r leave\x7f\x9b?",
    "ANSI escapes": "\x1b[1mWhen\x1b[0m does the ferry to Merren leave?\x1b[K",
    "Chinese": "去梅伦的渡轮什么时候出发？",
    "Russian": "Когда отправляется паром в Меррен?",
    "Arabic": "متى تغادر العبارة إلى ميرين؟",
    "Spanish": "¿A qué hora sale el ferry a Merren?",
    "mixed scripts": "Ferry 渡轮 паром Merren ⏰ 8:00?",
}


@pytest.fixture(scope="module")
def question_index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("questions")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    return root


@pytest.fixture
def bot(question_index: Path, shared_embedder) -> RAG:
    settings = load_settings(index_dir=question_index / "index", llm="extractive")
    if index_stats(settings)["chunks"] == 0:
        assert ingest([question_index / "docs"], settings, embedder=shared_embedder).ok
    return RAG(settings)


def check_answer(answer: Answer) -> None:
    """A proper answer (cited, quotes are exact source text) or a proper refusal."""
    assert answer.answer.strip()
    if answer.refused:
        assert answer.citations == []
        assert "documents don't say" in answer.answer
        return
    assert answer.citations
    for citation in answer.citations:
        text = DOCS[citation.source]
        assert text[citation.start : citation.end] == citation.quote
        assert f"[{citation.n}]" in answer.answer


@pytest.mark.parametrize("kind", sorted(REFUSED_OR_ERROR))
def test_api_rejects_questions_without_words(bot: RAG, kind: str) -> None:
    before = index_stats(bot.settings)
    with pytest.raises(QuestionError) as caught:
        bot.ask(REFUSED_OR_ERROR[kind])
    message = str(caught.value)
    assert "question" in message and "\n" not in message
    assert index_stats(bot.settings) == before


@pytest.mark.parametrize("kind", sorted(ANSWERABLE))
def test_api_answers_or_refuses_odd_questions(bot: RAG, kind: str) -> None:
    before = index_stats(bot.settings)
    answer = bot.ask(ANSWERABLE[kind])
    check_answer(answer)
    assert len(answer.question) <= bot.settings.max_question_chars
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in answer.question)
    assert index_stats(bot.settings) == before


def test_api_answers_the_cleaned_questions(bot: RAG) -> None:
    answer = bot.ask(ANSWERABLE["control characters"])
    assert not answer.refused
    assert answer.citations[0].source == "ferry.txt"
    assert "8:00" in answer.answer
    long = bot.ask(ANSWERABLE["20,000 characters"])
    assert len(long.answer) < 1000  # whatever it says, it says it briefly


def test_api_answers_a_question_of_two_sentences(bot: RAG) -> None:
    answer = bot.ask("I am planning a day trip. When does the ferry to Merren leave?")
    assert not answer.refused, answer.answer
    assert "8:00" in answer.answer


def test_api_history_with_junk(bot: RAG) -> None:
    history = [("", ""), ("\x00", None), {"role": "user", "content": ["a", {"text": "b"}]}]
    check_answer(bot.ask("How long is the crossing?", history=history))


@pytest.mark.parametrize("kind", sorted(REFUSED_OR_ERROR))
def test_cli_rejects_questions_without_words(
    kind: str, question_index: Path, bot: RAG, run_rag, clean_failure
) -> None:
    question = REFUSED_OR_ERROR[kind].replace("\x00", "")  # argv cannot carry NUL
    result = run_rag(
        "ask", question, "--json", "--llm", "extractive", "--index", question_index / "index"
    )
    clean_failure(result, "question")
    assert result.stdout == ""


def test_cli_answers_a_long_mixed_question(question_index: Path, bot: RAG, run_rag) -> None:
    before = index_stats(bot.settings)
    # one process (each loads the model): 20,000 characters, non-Latin scripts, control chars
    question = ("Когда\x1b[2J паром 渡轮 to Merren\x07 leaves?\r\n" + LONG)[:20_000]
    assert len(question) == 20_000
    result = run_rag(
        "ask", question, "--json", "--llm", "extractive", "--index", question_index / "index"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    check_answer(Answer.model_validate(data))
    assert set(data) >= {"question", "answer", "refused", "citations", "retrieved", "llm"}
    assert data["llm"] == "extractive"
    assert len(data["question"]) <= 2000
    assert index_stats(bot.settings) == before
