"""The last step of the chain: check the draft sentence by sentence and stream only what passed.

Small local models hallucinate and cite loosely, so nothing they say is shown unchecked. As the
draft arrives, each completed sentence is attributed to the retrieved span that supports it best
(content words and embedding similarity; numbers must match) and read by the reader against the
question; a sentence that passes is streamed at once with its [n], one that fails is dropped.
When nothing passes, the answer quotes the sentences the reader ranked best, or refuses. The
streamed sentences are always a prefix of the final answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from rag.answer.citations import Composer, direct_answer, retrieved_info
from rag.answer.models import REFUSAL_PREFIX, Answer, Candidate, StreamEvent, Timings
from rag.answer.state import Turn, turn_of
from rag.answer.text import REFUSAL_PHRASES
from rag.answer.verify import (
    Support,
    Verifier,
    adds_information,
    choose_support,
    drop_lead_in,
    new_words,
    split_answer,
)
from rag.reader import Reader
from rag.retrieval import RetrievedChunk

# How strictly generated sentences must be supported by their source span (share of content
# words and embedding similarity, Verifier.support); a strict backend (the tiny default model)
# must stay near-verbatim. The reader's own thresholds are calibrated with the model.
MIN_SUPPORT = 0.55
STRICT_MIN_SUPPORT = 0.75
MAX_EXTRACTIVE_SENTENCES = 2


def refusal_text(reason: str | None = None) -> str:
    base = f"{REFUSAL_PREFIX}: I found nothing in the indexed documents that answers this."
    return f"{base} ({reason})" if reason else base


def quote_best(
    ranked: list[Candidate], chunks: list[RetrievedChunk], reader: Reader
) -> list[tuple[str, Support]]:
    """The best sentence, quoted, and a second one when the reader finds it answers nearly as
    well (distinct spans; best first). Whether to answer at all is decided before."""
    if not ranked:
        return []
    calibration = reader.calibration
    floor = max(
        calibration.sentence_threshold, ranked[0].score - calibration.second_sentence_margin
    )
    chosen: list[Candidate] = []
    seen: list[tuple[str, int, int]] = []
    for candidate in ranked:
        if len(chosen) >= MAX_EXTRACTIVE_SENTENCES or (chosen and candidate.score < floor):
            break
        chunk = chunks[candidate.chunk_index]
        source = chunk.source
        start, end = chunk.start + candidate.start, chunk.start + candidate.end
        # Overlapping chunks hold the same sentence twice; a list item is inside its lead-in.
        if not any(
            source == other and start < other_end and other_start < end
            for other, other_start, other_end in seen
        ):
            seen.append((source, start, end))
            chosen.append(candidate)
    return [
        (
            chunks[c.chunk_index].text[c.start : c.end],
            Support(
                c.chunk_index,
                chunks[c.chunk_index].start + c.start,
                chunks[c.chunk_index].start + c.end,
                c.score,
            ),
        )
        for c in chosen
    ]


def refused_answer(turn: Turn, reason: str, draft: str = "", generate_s: float = 0.0) -> Answer:
    return Answer(
        question=turn.question,
        standalone_question=turn.standalone,
        answer=refusal_text(reason),
        refused=True,
        citations=[],
        retrieved=retrieved_info(turn.chunks),
        llm=turn.spec.label,
        timings=Timings(
            load_s=round(turn.load_s, 4),
            retrieve_s=round(turn.retrieve_s, 4),
            generate_s=round(generate_s, 4),
            total_s=round(time.perf_counter() - turn.started, 4),
        ),
        draft=draft,
        mode="refused",
    )


class AnswerChecker:
    """Checks one turn's draft as it grows: ``feed`` each chain chunk, then ``finish``."""

    def __init__(self, reader: Reader, verifier: Verifier):
        self.reader = reader
        self.verifier = verifier
        self.turn: Turn | None = None
        self.draft = ""
        self.checked = 0  # draft sentences already checked
        self.kept = 0
        self.composer: Composer | None = None

    def feed(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        """Take the next piece of the chain's output (the turn, or more draft)."""
        events: list[StreamEvent] = []
        if "turn" in chunk and self.turn is None:
            self.turn = turn_of(chunk)
            turn = self.turn
            confident = turn.ranked and (
                turn.ranked[0].score >= self.reader.calibration.direct_answer_threshold
            )
            direct = direct_answer(turn.ranked[0], turn.chunks) if confident else ""
            self.composer = Composer(turn.chunks, direct)
            if turn.writes:
                events.append(StreamEvent("stage", text="writing"))
        piece = chunk.get("draft")
        if piece:
            text = piece if isinstance(piece, str) else str(getattr(piece, "content", piece))
            self.draft += text
            if self.turn is not None and self.turn.drafts and text:
                events.append(StreamEvent("token", text=text))
            events.extend(self._check_sentences(final=False))
        return events

    def finish(self) -> list[StreamEvent]:
        """Check the last sentence, fall back to quoting (or refuse), and end with ``final``."""
        turn = self.turn
        if turn is None:
            raise ValueError("the check step received no turn")
        generate_s = time.perf_counter() - (turn.read_done or turn.started)
        if turn.refusal is not None:
            return [StreamEvent("final", answer=refused_answer(turn, turn.refusal))]
        events = self._check_sentences(final=True)
        composer = self.composer
        assert composer is not None
        mode = "generated"
        pieces = split_answer(self.draft) if self.draft.strip() else []
        said_unknown = bool(REFUSAL_PHRASES.search(self.draft)) and len(pieces) <= 2
        if not self.kept and said_unknown and not turn.spec.capabilities.strict:
            # A capable model that read the passages and found no answer is believed; the tiny
            # default model says "I don't know" too readily, so its answer is quoted instead.
            answer = refused_answer(turn, "the passages found do not answer it", self.draft)
            answer.timings.generate_s = round(generate_s, 4)
            return [*events, StreamEvent("final", answer=answer)]
        if not self.kept:
            mode = "extractive"
            for text, support in quote_best(turn.ranked, turn.chunks, self.reader):
                events.append(StreamEvent("sentence", text=composer.add(text, support)))
                self.kept += 1
        if not self.kept:
            reason = "no sentence in the retrieved passages answers it"
            answer = refused_answer(turn, reason, self.draft, generate_s)
            return [*events, StreamEvent("final", answer=answer)]
        answer = Answer(
            question=turn.question,
            standalone_question=turn.standalone,
            answer=composer.text,
            refused=False,
            citations=composer.citations,
            retrieved=retrieved_info(turn.chunks),
            llm=turn.spec.label,
            timings=Timings(
                load_s=round(turn.load_s, 4),
                retrieve_s=round(turn.retrieve_s, 4),
                generate_s=round(generate_s, 4) if turn.writes else 0.0,
                total_s=round(time.perf_counter() - turn.started, 4),
            ),
            draft=self.draft,
            mode=mode,
            direct=composer.direct if composer.leads_with_direct else "",
        )
        return [*events, StreamEvent("final", answer=answer)]

    def _check_sentences(self, final: bool) -> list[StreamEvent]:
        """Check the draft's completed sentences not checked yet (all of them when ``final``)."""
        turn, composer = self.turn, self.composer
        if turn is None or composer is None or not turn.writes or not self.draft.strip():
            return []
        pieces = split_answer(self.draft)
        ready = len(pieces) if final else len(pieces) - 1  # the last may still be growing
        events = []
        while self.checked < ready:
            text, markers = pieces[self.checked]
            self.checked += 1
            passed = self._passes(turn, drop_lead_in(text), markers)
            if passed is not None:
                events.append(StreamEvent("sentence", text=composer.add(*passed)))
                self.kept += 1
        return events

    def _passes(self, turn: Turn, text: str, markers: list[int]) -> tuple[str, Support] | None:
        """The sentence with its support, when it is supported, on topic and answers the
        question in the reader's judgement (scored as a candidate sentence of the support's
        chunk, so the calibrated thresholds apply); None when it is dropped."""
        if REFUSAL_PHRASES.search(text):
            return None
        strict = turn.spec.capabilities.strict
        chunks = turn.chunks
        embedder = self.verifier.embedder
        vectors = embedder.encode([text])
        row = self.verifier.support([text], chunks, single_only=strict, vectors=vectors)[0]
        support = choose_support(row, markers, chunks)
        min_support = STRICT_MIN_SUPPORT if strict else MIN_SUPPORT
        if (
            support is None
            or support.score < min_support
            or (strict and new_words(text, support, chunks))
            or not adds_information(text, turn.standalone)
        ):
            return None
        calibration = self.reader.calibration
        bar = calibration.sentence_threshold
        if strict and turn.ranked:
            bar = max(bar, turn.ranked[0].score - calibration.second_sentence_margin)
        chunk = chunks[support.chunk_index]
        title = chunk.heading_at(support.start - chunk.start)
        read = self.reader.score(turn.standalone, [(title, text)])[0]
        cosine = float(vectors[0] @ embedder.encode_query(turn.standalone))
        score = calibration.sentence_score(read.score, cosine, support.chunk_index)
        return (text, support) if score >= bar else None


class CheckAnswer(Runnable[dict[str, Any], Any]):
    """The chain's check step. ``invoke`` returns the checked :class:`Answer`; ``stream`` (and
    ``astream``, ``astream_events``) yield :class:`StreamEvent` s: ``stage``, optional ``token``
    (raw draft, only when asked for), ``sentence`` (checked text with its [n], in order), and
    one ``final`` with the Answer."""

    name = "check"

    def __init__(self, reader: Reader, verifier: Verifier):
        self.reader = reader
        self.verifier = verifier

    def _events(self, chunks: Iterator[dict[str, Any]]) -> Iterator[StreamEvent]:
        checker = AnswerChecker(self.reader, self.verifier)
        for chunk in chunks:
            yield from checker.feed(chunk)
        yield from checker.finish()

    async def _aevents(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[StreamEvent]:
        checker = AnswerChecker(self.reader, self.verifier)
        async for chunk in chunks:
            for event in await asyncio.to_thread(checker.feed, chunk):
                yield event
        for event in await asyncio.to_thread(checker.finish):
            yield event

    def _final(self, state: dict[str, Any]) -> Answer:
        for event in self._events(iter([state])):
            if event.answer is not None:
                return event.answer
        raise RuntimeError("the check step ended without an answer")

    def invoke(self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any):
        return self._call_with_config(self._final, input, config)

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ):
        return await asyncio.to_thread(self.invoke, input, config)

    def transform(
        self, input: Iterator[dict[str, Any]], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[StreamEvent]:
        yield from self._transform_stream_with_config(input, self._events, config)

    def stream(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[StreamEvent]:
        yield from self.transform(iter([input]), config, **kwargs)

    async def atransform(
        self,
        input: AsyncIterator[dict[str, Any]],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[StreamEvent]:
        async for event in self._atransform_stream_with_config(input, self._aevents, config):
            yield event

    async def astream(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[StreamEvent]:
        async def one() -> AsyncIterator[dict[str, Any]]:
            yield input

        async for event in self.atransform(one(), config, **kwargs):
            yield event
