"""Per-session conversations over the real pipeline (seed index, extractive answers): questions
asked while one is being answered are queued, shown at once and answered in order; two drains
never answer the same question; "New chat" abandons the running turn."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from test_ui_support import FOLLOW_UP, QUESTION, UNANSWERABLE

from rag.config import Settings
from rag.ui.conversation import Conversation, Conversations, History


@pytest.fixture(scope="module")
def bot(seed_index: Settings):
    from rag.answer import RAG

    return RAG(seed_index)


def extractive(bot: Any, gate: threading.Event | None = None):
    """The pipeline's stream in extractive mode; with ``gate``, each answer waits for it."""

    def stream(question: str, history: History) -> Iterator[Any]:
        if gate is not None:
            assert gate.wait(60)
        yield from bot.stream(question, history, llm="extractive")

    return stream


def kinds(view: list[dict[str, Any]]) -> list[str]:
    out = []
    for message in view:
        content = str(message["content"])
        for kind in ("rag-question", "rag-queued", "rag-pending", "rag-answer", "rag-refusal"):
            if kind in content:
                out.append(kind)
                break
        else:
            out.append("sources" if message.get("metadata") else "other")
    return out


def test_questions_asked_during_an_answer_are_queued_and_answered_in_order(bot) -> None:
    conversation = Conversation()
    gate = threading.Event()
    assert conversation.enqueue(QUESTION)
    views: list[list[dict[str, Any]]] = []
    drain = conversation.drain(extractive(bot, gate))
    views.append(next(drain))  # the first question is being answered (pending note)
    assert conversation.enqueue(UNANSWERABLE)
    assert not conversation.enqueue("   ")
    queued = conversation.view()
    assert kinds(queued) == ["rag-question", "rag-pending", "rag-question", "rag-queued"]
    gate.set()
    views.extend(drain)
    final = kinds(views[-1])
    assert final == [
        "rag-question",
        "rag-answer",
        "sources",
        "rag-question",
        "rag-refusal",
        "sources",
    ]
    assert [q for q, _ in conversation.history] == [QUESTION, UNANSWERABLE]
    assert not conversation.draining and not conversation.queued


def test_follow_up_is_read_in_the_session_context(bot) -> None:
    conversation = Conversation()
    conversation.enqueue(QUESTION)
    conversation.enqueue(FOLLOW_UP)
    *_, view = conversation.drain(extractive(bot))
    assert "understood as" in str(view[4]["content"])


def test_a_second_drain_never_answers_the_same_question(bot) -> None:
    conversation = Conversation()
    gate = threading.Event()
    conversation.enqueue(QUESTION)
    first = conversation.drain(extractive(bot, gate))
    next(first)
    conversation.enqueue(UNANSWERABLE)
    second = list(conversation.drain(extractive(bot)))
    assert len(second) == 1  # it only reports the view: the running drain owns the queue
    gate.set()
    list(first)
    assert [q for q, _ in conversation.history] == [QUESTION, UNANSWERABLE]


def test_new_chat_abandons_the_running_turn_and_the_queue(bot) -> None:
    conversation = Conversation()
    gate = threading.Event()
    conversation.enqueue(QUESTION)
    conversation.enqueue(UNANSWERABLE)
    drain = conversation.drain(extractive(bot, gate))
    next(drain)
    conversation.clear()
    gate.set()
    rest = list(drain)
    assert rest[-1] == [] and conversation.history == [] and not conversation.draining
    conversation.enqueue(QUESTION)
    *_, view = conversation.drain(extractive(bot))
    assert kinds(view)[:2] == ["rag-question", "rag-answer"]


def test_sessions_are_separate_and_forgotten() -> None:
    sessions = Conversations()
    sessions.get("a").enqueue(QUESTION)
    assert sessions.get("b").view() == [] and len(sessions) == 2
    sessions.forget("a")
    assert sessions.get("a").view() == [] and len(sessions) == 2


def test_regenerate_asks_the_last_question_again_in_place(bot) -> None:
    conversation = Conversation()
    conversation.enqueue(QUESTION)
    conversation.enqueue(UNANSWERABLE)
    *_, before = conversation.drain(extractive(bot))
    assert conversation.regenerate()
    assert not conversation.regenerate()  # the question is waiting again: nothing more to do
    *_, after = conversation.drain(extractive(bot))
    assert kinds(after) == kinds(before)
    assert [q for q, _ in conversation.history] == [QUESTION, UNANSWERABLE]
    # Only the newest answer offers Regenerate.
    offers = ["rag-regen" in str(message["content"]) for message in after]
    assert offers.count(True) == 1 and "rag-regen" in str(after[4]["content"])


def test_regenerate_waits_for_the_running_answer(bot) -> None:
    conversation = Conversation()
    assert not conversation.regenerate()  # nothing answered yet
    gate = threading.Event()
    conversation.enqueue(QUESTION)
    drain = conversation.drain(extractive(bot, gate))
    next(drain)
    assert not conversation.regenerate()
    gate.set()
    list(drain)
    assert conversation.regenerate()


def test_regenerate_right_after_the_answer_is_shown(bot) -> None:
    """The answer is on screen while its drain is still winding up (between its last view and
    its return): Regenerate works then too, and that same drain answers again. It used to do
    nothing, and a click on Regenerate at that moment was lost."""
    conversation = Conversation()
    conversation.enqueue(QUESTION)
    drain = conversation.drain(extractive(bot))
    before = next(drain)
    while conversation.active or not conversation.turns:
        before = next(drain)
    assert conversation.draining and kinds(before)[-2:] == ["rag-answer", "sources"]
    assert conversation.regenerate()
    *_, after = drain
    assert kinds(after) == kinds(before)
    assert [q for q, _ in conversation.history] == [QUESTION]
    assert not conversation.draining and not conversation.queued
