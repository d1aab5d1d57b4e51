"""Per-session conversations for the chat UI: a question is never dropped.

Gradio ignores a second submission while an event is pending (trigger mode "once"), and two
events of one session racing over the same chat value overwrite each other. So the chat's truth
lives here, on the server, one :class:`Conversation` per browser session: submitting a question
only *enqueues* it (shown at once, marked as queued), and one worker per session *drains* the
queue in order, streaming each answer. Every update the page receives is a full view of the
conversation, so whichever update arrives last is right.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rag.config import RagError
from rag.ui import render

log = logging.getLogger("rag.ui")

Message = dict[str, Any]
History = list[tuple[str, str]]
# stream(question, history) -> the pipeline's events (``token`` events, then one with ``answer``)
Streamer = Callable[[str, History], Iterator[Any]]


def answer_turn(
    stream: Streamer, question: str, history: History
) -> Iterator[tuple[list[Message], Any]]:
    """The assistant messages of one turn as it develops: what stage it is at, then only
    checked sentences as they pass, then the answer with its sources (or a refusal, or one clear
    error line). Each item is ``(messages, answer)``; ``answer`` is the final ``Answer`` on the
    last item, else None."""
    yield [{"role": "assistant", "content": render.pending_html()}], None
    checked = ""
    try:
        for event in stream(question, history):
            if event.kind == "stage" and not checked:
                yield [{"role": "assistant", "content": render.pending_html(event.text)}], None
            elif event.kind == "sentence":
                checked += event.text
                yield [{"role": "assistant", "content": render.partial_html(checked)}], None
            elif event.answer is not None:
                yield answer_messages(event.answer), event.answer
    except RagError as error:
        yield [{"role": "assistant", "content": render.error_html(str(error))}], None
    except Exception as error:  # never a traceback in the page; the log has it
        log.exception("answering failed")
        message = (
            f"something went wrong answering this ({type(error).__name__}); "
            "the server log has the details"
        )
        yield [{"role": "assistant", "content": render.error_html(message)}], None


def answer_messages(answer: Any) -> list[Message]:
    """The checked answer, then its sources (or, for a refusal, the closest passages)."""
    messages: list[Message] = [{"role": "assistant", "content": render.answer_html(answer)}]
    if answer.citations:
        messages.append(
            {
                "role": "assistant",
                "content": render.sources_html(answer.citations),
                "metadata": {"title": f"Sources ({len(answer.citations)})", "status": "done"},
            }
        )
    elif answer.refused and answer.retrieved:
        messages.append(
            {
                "role": "assistant",
                "content": render.passages_html(answer.retrieved),
                "metadata": {"title": "Closest passages (none answers it)", "status": "done"},
            }
        )
    return messages


@dataclass
class TurnRecord:
    """Where a finished turn's messages start, what was asked, and whether it was answered
    (an answered turn has an entry in the history)."""

    start: int
    question: str
    answered: bool


@dataclass
class Conversation:
    """One session's chat: finished turns, the turn being answered, and questions waiting."""

    messages: list[Message] = field(default_factory=list)
    history: History = field(default_factory=list)
    active: list[Message] = field(default_factory=list)
    queued: deque[str] = field(default_factory=deque)
    turns: list[TurnRecord] = field(default_factory=list)
    epoch: int = 0  # bumped by clear(): a turn started in an older epoch is abandoned
    draining: bool = False
    guard: threading.Lock = field(default_factory=threading.Lock)

    def view(self) -> list[Message]:
        """What the chat shows now: finished turns, the current one, then queued questions."""
        with self.guard:
            waiting: list[Message] = []
            for question in self.queued:
                waiting.append({"role": "user", "content": render.user_html(question)})
                waiting.append({"role": "assistant", "content": render.queued_html()})
            return [*self.messages, *self.active, *waiting]

    def enqueue(self, question: str) -> bool:
        """Add a question to the queue (blank ones are ignored); True when one was added."""
        question = (question or "").strip()
        if not question:
            return False
        with self.guard:
            self.queued.append(question)
        return True

    def clear(self) -> None:
        """Start over: forget the chat, the history and anything queued; abandon the turn
        being answered (its generation stops at the next step)."""
        with self.guard:
            self.messages, self.history, self.active, self.turns = [], [], [], []
            self.queued.clear()
            self.epoch += 1

    def regenerate(self) -> bool:
        """Ask the last question again in place of its answer; False (nothing done) while an
        answer is running or questions wait, or before any answer. A drain that has shown its
        last answer but not yet returned answers the question again itself (it checks the
        queue under the lock before it returns)."""
        with self.guard:
            if self.active or self.queued or not self.turns:
                return False
            last = self.turns.pop()
            del self.messages[last.start :]
            if last.answered and self.history:
                self.history.pop()
            self.queued.append(last.question)
            return True

    def drain(self, stream: Streamer) -> Iterator[list[Message]]:
        """Answer the queued questions in order, yielding the view after each step. Only one
        drain runs per conversation; a second one yields the view and returns (the first will
        reach any question queued meanwhile: the queue check and the hand-over happen under
        one lock)."""
        with self.guard:
            already = self.draining
            self.draining = True
        if already:
            yield self.view()
            return
        try:
            while True:
                with self.guard:
                    if not self.queued:
                        self.draining = False
                        break
                    question = self.queued.popleft()
                    epoch = self.epoch
                    history = list(self.history)
                    asked = {"role": "user", "content": render.user_html(question)}
                    self.active = [asked]
                    answered = False
                    for message in self.messages:  # only the newest answer offers Regenerate
                        if isinstance(message.get("content"), str):
                            message["content"] = message["content"].replace(render.REGENERATE, "")
                turn = answer_turn(stream, question, history)
                try:
                    for messages, answer in turn:
                        with self.guard:
                            if self.epoch != epoch:
                                break
                            self.active = [asked, *messages]
                            if answer is not None:
                                self.history.append((question, answer.answer))
                                answered = True
                        yield self.view()
                finally:
                    turn.close()
                with self.guard:
                    if self.epoch == epoch:
                        self.turns.append(TurnRecord(len(self.messages), question, answered))
                        self.messages.extend(self.active)
                    self.active = []
                yield self.view()
        finally:
            with self.guard:
                self.draining = False


class Conversations:
    """The conversations of all open sessions, by session id (thread-safe)."""

    def __init__(self) -> None:
        self._by_session: dict[str, Conversation] = {}
        self._lock = threading.Lock()

    def get(self, session: str | None) -> Conversation:
        key = session or ""
        with self._lock:
            conversation = self._by_session.get(key)
            if conversation is None:
                conversation = self._by_session[key] = Conversation()
            return conversation

    def forget(self, session: str | None) -> None:
        """Drop a closed session's conversation (abandoning any turn it was answering)."""
        with self._lock:
            conversation = self._by_session.pop(session or "", None)
        if conversation is not None:
            conversation.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_session)
