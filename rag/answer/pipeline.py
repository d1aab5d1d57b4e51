"""Answering: condense → retrieve → numbered context → generate → verify → format.

Small local models hallucinate and cite loosely, so nothing they say is shown unchecked: every
answer sentence is attributed to the retrieved chunk that supports it best (lexical and
embedding support, numbers must match), unsupported sentences are dropped, and when nothing
supported is left the answer falls back to sentences quoted from the documents, or to a refusal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda

from rag.answer.citations import compose_answer, direct_answer, retrieved_info
from rag.answer.condense import History, condense_heuristic, condense_with_llm, is_follow_up
from rag.answer.models import REFUSAL_PREFIX, Answer, Candidate, StreamEvent, Timings
from rag.answer.text import REFUSAL_PHRASES, WORD, clean_question
from rag.answer.verify import (
    Support,
    Verifier,
    adds_information,
    choose_support,
    drop_lead_in,
    list_end,
    new_words,
    split_answer,
)
from rag.config import RagError, Settings, load_settings
from rag.embeddings import get_embedder
from rag.llm import LLMSpec, LLMUnavailableError, endpoint, load_chat_model, parse_spec
from rag.reader import READER_DIR, Reader, get_reader
from rag.retrieval import HybridSearcher, RetrievalResult, RetrievedChunk

# How strictly generated sentences must be supported by their source span (share of content
# words and embedding similarity, rag.answer.Verifier.support). The reader's own thresholds
# (when the documents answer at all, when a second sentence is quoted) are calibrated on
# held-out validation articles and stored with the model: rag/models/reader/reader.json.
MIN_SUPPORT = 0.55
WEAK_MODEL_MIN_SUPPORT = 0.75
LOCAL_CONTEXT_CHARS = 600
MAX_EXTRACTIVE_SENTENCES = 2
# Sentences the reader scores per question (the best by embedding similarity to it).
MAX_READER_CANDIDATES = 24


# The pipeline ----------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources below. Write one to three short "
    "sentences. After each sentence, cite the source it comes from, like [1]. If the sources "
    "do not answer the question, reply exactly: I don't know."
)


def refusal_text(reason: str | None = None) -> str:
    base = f"{REFUSAL_PREFIX}: I found nothing in the indexed documents that answers this."
    return f"{base} ({reason})" if reason else base


@dataclass
class _State:
    question: str
    history: History | None
    k: int
    sources: list[str] | None
    spec: LLMSpec
    standalone: str = ""
    retrieval: RetrievalResult | None = None
    started: float = field(default_factory=time.perf_counter)
    retrieve_s: float = 0.0
    ranked: list[Candidate] = field(default_factory=list)


class RAG:
    """The question-answering pipeline over one index; load once, ask many times (thread-safe).

    >>> bot = RAG()                                      # doctest: +SKIP
    >>> answer = bot.ask("What share of ...?")           # doctest: +SKIP
    >>> answer.answer, answer.citations                  # doctest: +SKIP
    """

    def __init__(
        self,
        settings: Settings | None = None,
        searcher: HybridSearcher | None = None,
        chat_model: BaseChatModel | None = None,
        reader: Reader | None = None,
    ):
        """``chat_model``: any LangChain chat model to answer with instead of ``settings.llm``
        (its answers are verified the same way)."""
        self.settings = settings or load_settings()
        self.embedder = get_embedder(self.settings)
        self.searcher = searcher or HybridSearcher(self.settings, self.embedder)
        self.verifier = Verifier(self.embedder)
        self.reader = reader or get_reader(self.settings.reader_dir or READER_DIR)
        self.chat_model = chat_model
        if chat_model is not None:
            name = getattr(chat_model, "_llm_type", None) or type(chat_model).__name__
            self.default_spec = LLMSpec("custom", str(name))
        else:
            self.default_spec = parse_spec(self.settings.llm)

    def model_for(self, spec: LLMSpec) -> BaseChatModel | None:
        """The chat model that answers for ``spec`` (None: extractive, no LLM)."""
        if spec.kind == "custom":
            return self.chat_model
        return load_chat_model(spec, self.settings)

    # Public API ------------------------------------------------------------------------

    def ask(
        self,
        question: str,
        history: History | None = None,
        *,
        k: int | None = None,
        llm: str | None = None,
        sources: list[str] | None = None,
    ) -> Answer:
        """Answer ``question`` (with the conversation so far, if any) from the documents."""
        final: Answer | None = None
        for event in self.stream(question, history, k=k, llm=llm, sources=sources):
            if event.kind == "final":
                final = event.answer
        assert final is not None
        return final

    def stream(
        self,
        question: str,
        history: History | None = None,
        *,
        k: int | None = None,
        llm: str | None = None,
        sources: list[str] | None = None,
    ) -> Iterator[StreamEvent]:
        """Draft tokens as they are generated, then one ``final`` event with the checked answer."""
        state = self._prepare(question, history, k, llm, sources)
        yield from self._generate_and_verify(state)

    def chain(self) -> Runnable:
        """The pipeline as a LangChain runnable: input ``{"question", "history"?, "k"?,
        "llm"?, "sources"?}``; ``.stream()`` yields StreamEvents, the last being ``final``."""

        def prepare(inputs: dict[str, Any]) -> _State:
            return self._prepare(
                inputs["question"],
                inputs.get("history"),
                inputs.get("k"),
                inputs.get("llm"),
                inputs.get("sources"),
            )

        def generate(states: Iterator[_State]) -> Iterator[StreamEvent]:
            for state in states:
                yield from self._generate_and_verify(state)

        return RunnableLambda(prepare, name="condense_and_retrieve") | RunnableGenerator(
            generate, name="generate_and_verify"
        )

    # Steps -----------------------------------------------------------------------------

    def _prepare(
        self,
        question: str,
        history: History | None,
        k: int | None,
        llm: str | None,
        sources: list[str] | None,
    ) -> _State:
        text = clean_question(question, self.settings.max_question_chars)
        spec = parse_spec(llm) if llm else self.default_spec
        state = _State(text, history, k or self.settings.k, sources, spec)
        state.standalone = self.condense(text, history, spec)
        began = time.perf_counter()
        state.retrieval = self.searcher.search(state.standalone, k=state.k, sources=sources)
        state.retrieve_s = time.perf_counter() - began
        return state

    def condense(self, question: str, history: History | None, spec: LLMSpec) -> str:
        """A standalone question: an LLM rewrite with capable remote models, else heuristic."""
        if not history:
            return question
        if spec.kind in ("ollama", "openai", "custom") and is_follow_up(question):
            model = self.model_for(spec)
            if model is not None:
                return condense_with_llm(model, question, history)
        return condense_heuristic(question, history)

    def _generate_and_verify(self, state: _State) -> Iterator[StreamEvent]:
        retrieval = state.retrieval
        assert retrieval is not None
        chunks = retrieval.chunks
        ranked = self.read(state, chunks)
        reason = self._refusal_reason(ranked, retrieval)
        if reason is not None:
            yield StreamEvent("final", answer=self._refused(state, reason))
            return
        state.ranked = ranked
        model = self.model_for(state.spec)
        generate_started = time.perf_counter()
        draft = ""
        if model is not None:
            try:
                budget = self.context_budget(state.spec)
                excerpts = self.excerpts(chunks, ranked, budget)
                for piece in model.stream(self.messages(state.standalone, chunks, excerpts)):
                    token = str(piece.content)
                    if token:
                        draft += token
                        yield StreamEvent("token", text=token)
            except RagError:
                raise
            except Exception as error:
                where = endpoint(state.spec)
                raise LLMUnavailableError(
                    f"the LLM {state.spec.label}{' at ' + where if where else ''} failed: "
                    f"{type(error).__name__}: {str(error)[:200]}. Check that it is running, or "
                    "use --llm extractive to answer without an LLM."
                ) from None
        answer = self.verify(state, draft, generate_started)
        yield StreamEvent("final", answer=answer)

    def context_budget(self, spec: LLMSpec) -> int | None:
        """Characters of source text to put in the prompt (None: whole chunks)."""
        if self.settings.llm_context_chars is not None:
            return self.settings.llm_context_chars or None
        return LOCAL_CONTEXT_CHARS if spec.kind == "local" else None

    def excerpts(
        self,
        chunks: list[RetrievedChunk],
        ranked: list[Candidate],
        budget: int | None,
    ) -> list[str]:
        """Per chunk, the text the model sees: whole chunks, or within ``budget`` characters the
        chunks' most relevant sentences (``ranked``, from rank_sentences) in document order.
        Short prompts make a small model both faster (time to first token) and less
        distracted."""
        if budget is None:
            return [chunk.text for chunk in chunks]
        chosen: dict[int, list[tuple[int, int]]] = {}
        used = 0
        for candidate in ranked:
            index, a, b = candidate.chunk_index, candidate.start, candidate.end
            if used + (b - a) > budget and used > 0:
                continue
            taken = chosen.setdefault(index, [])
            if any(a < end and start < b for start, end in taken):
                continue  # a lead-in span and its list items overlap
            taken.append((a, b))
            used += b - a + 1
            if used >= budget:
                break
        return [
            " ".join(chunks[i].text[a:b] for a, b in sorted(chosen.get(i, [])))
            for i in range(len(chunks))
        ]

    def messages(
        self, question: str, chunks: list[RetrievedChunk], excerpts: list[str] | None = None
    ) -> list[BaseMessage]:
        """The prompt: instructions, numbered sources (whole or excerpted), the question."""
        texts = excerpts if excerpts is not None else [chunk.text for chunk in chunks]
        context = "\n\n".join(
            f"[{n}] {chunk.title}\n{text}"
            if chunk.title and not text.startswith(chunk.title)
            else f"[{n}] {text}"
            for n, (chunk, text) in enumerate(zip(chunks, texts, strict=True), start=1)
            if text
        )
        return [
            SystemMessage(content=SYSTEM_PROMPT),
            HumanMessage(content=f"Sources:\n{context}\n\nQuestion: {question}"),
        ]

    @property
    def answer_threshold(self) -> float:
        """The answerability below which the documents are taken not to answer (calibrated on
        held-out validation articles unless RAG_ANSWER_THRESHOLD overrides it)."""
        if self.settings.answer_threshold is not None:
            return self.settings.answer_threshold
        return self.reader.calibration.answer_threshold

    def answerability(self, ranked: list[Candidate], retrieval: RetrievalResult) -> float:
        """How likely the passages answer the question (a logit; see rag.reader.Calibration)."""
        if not ranked:
            return float("-inf")
        return self.reader.calibration.answerability(ranked[0].score, retrieval.best_dense)

    def _refusal_reason(self, ranked: list[Candidate], retrieval: RetrievalResult) -> str | None:
        if not ranked:
            if self.searcher.is_empty():
                return "the index is empty"
            return "no passage was found for it"
        if self.answerability(ranked, retrieval) < self.answer_threshold:
            return "no passage answers it"
        return None

    def verify(self, state: _State, draft: str, generate_started: float) -> Answer:
        """Keep the draft's supported, on-topic sentences (re-cited); else quote; else refuse."""
        chunks = state.retrieval.chunks if state.retrieval else []
        generate_s = time.perf_counter() - generate_started
        ranked = state.ranked or self.read(state, chunks)
        pieces = split_answer(draft) if draft.strip() else []
        said_unknown = bool(REFUSAL_PHRASES.search(draft)) and len(pieces) <= 2
        if said_unknown and state.spec.kind != "local":
            # A capable model that read the passages and found no answer is believed; the tiny
            # default model says "I don't know" too readily, so its answer is quoted instead.
            answer = self._refused(state, "the passages found do not answer it")
            answer.draft = draft
            answer.timings.generate_s = round(generate_s, 4)
            return answer
        # The tiny default model's sentences must be near-verbatim and answer about as well as
        # the best quote; capable models may paraphrase. Either way the reader must find an
        # answer to the question in the sentence.
        weak = state.spec.kind == "local"
        min_support = WEAK_MODEL_MIN_SUPPORT if weak else MIN_SUPPORT
        bar = self.reader.calibration.sentence_threshold
        if weak and ranked:
            bar = max(bar, ranked[0].score - self.reader.calibration.second_sentence_margin)
        kept: list[tuple[str, Support]] = []
        if pieces and not said_unknown:
            texts = [drop_lead_in(text) for text, _ in pieces]
            table = self.verifier.support(texts, chunks, single_only=weak)
            supported: list[tuple[str, Support]] = []
            for text, (_, markers), row in zip(texts, pieces, table, strict=True):
                support = choose_support(row, markers, chunks)
                if (
                    support is not None
                    and support.score >= min_support
                    and not (weak and new_words(text, support, chunks))
                    and adds_information(text, state.standalone)
                ):
                    supported.append((text, support))
            scores = self.reader.score(
                state.standalone,
                [(chunks[support.chunk_index].title, text) for text, support in supported],
            )
            kept = [
                pair for pair, score in zip(supported, scores, strict=True) if score.score >= bar
            ]
        mode = "generated"
        if not kept:
            kept = self.extractive(ranked, chunks)
            mode = "extractive"
        if not kept:
            answer = self._refused(state, "no sentence in the retrieved passages answers it")
            answer.draft = draft
            answer.timings.generate_s = round(generate_s, 4)
            return answer
        confident = ranked and ranked[0].score >= self.reader.calibration.direct_answer_threshold
        direct = direct_answer(ranked[0], chunks) if confident else ""
        text, citations = compose_answer(kept, chunks, direct)
        return Answer(
            question=state.question,
            standalone_question=state.standalone,
            answer=text,
            refused=False,
            citations=citations,
            retrieved=retrieved_info(chunks),
            llm=state.spec.label,
            timings=Timings(
                retrieve_s=round(state.retrieve_s, 4),
                generate_s=round(generate_s, 4),
                total_s=round(time.perf_counter() - state.started, 4),
            ),
            draft=draft,
            mode=mode,
            direct=direct if direct and text.startswith(direct) else "",
        )

    def read(self, state: _State, chunks: list[RetrievedChunk]) -> list[Candidate]:
        """The reader's ranking of the retrieved sentences. A follow-up condensed with the
        previous question ("When did the ferry start? And what about the bridge?") is read as
        asked when the reader finds an answer to it in the passages the condensed question
        retrieved, else as condensed."""
        if not chunks:
            return []
        if state.standalone != state.question:
            own = self.rank_sentences(state.question, chunks)
            if own and own[0].score >= self.reader.calibration.sentence_threshold:
                return own
        return self.rank_sentences(state.standalone, chunks)

    def rank_sentences(self, question: str, chunks: list[RetrievedChunk]) -> list[Candidate]:
        """The retrieved chunks' sentences (a lead-in ending in ':' carries its list), scored by
        the reader, best first. Sentences repeated by overlapping chunks are scored once; past
        MAX_READER_CANDIDATES, those farthest from the question in embedding space are left out
        (the reader costs ~5 ms a sentence on two cores)."""
        if not chunks:
            return []
        query_vector = self.embedder.encode_query(question)
        pool: list[tuple[float, int, int, int]] = []
        seen: set[tuple[str, int, int]] = set()
        for index, chunk in enumerate(chunks):
            info = self.verifier.chunk_sentences(chunk)
            similarities = info.vectors[: len(info.spans)] @ query_vector
            for s, (a, _) in enumerate(info.spans):
                last = list_end(chunk.text, info.spans, s)
                b = info.spans[last][1]
                key = (chunk.source, chunk.start + a, chunk.start + b)
                if key in seen or not WORD.search(chunk.text[a:b]):
                    continue
                seen.add(key)
                pool.append((float(similarities[s : last + 1].max()), index, a, b))
        pool.sort(key=lambda item: item[0], reverse=True)
        pool = pool[:MAX_READER_CANDIDATES]
        scores = self.reader.score(
            question, [(chunks[index].title, chunks[index].text[a:b]) for _, index, a, b in pool]
        )
        ranked = [
            Candidate(score.score, index, a, b, a + score.start, a + score.end)
            for (_, index, a, b), score in zip(pool, scores, strict=True)
        ]
        ranked.sort(key=lambda candidate: candidate.score, reverse=True)
        return ranked

    def extractive(
        self, ranked: list[Candidate], chunks: list[RetrievedChunk]
    ) -> list[tuple[str, Support]]:
        """The best sentence, quoted, and a second one when the reader finds it answers nearly
        as well (distinct spans; best first). Whether to answer at all is decided before."""
        if not ranked:
            return []
        calibration = self.reader.calibration
        floor = max(
            calibration.sentence_threshold, ranked[0].score - calibration.second_sentence_margin
        )
        chosen: list[Candidate] = []
        seen: list[tuple[str, int, int]] = []
        for candidate in ranked:
            if len(chosen) >= MAX_EXTRACTIVE_SENTENCES or (chosen and candidate.score < floor):
                break
            chunk = chunks[candidate.chunk_index]
            source, start, end = (
                chunk.source,
                chunk.start + candidate.start,
                chunk.start + candidate.end,
            )
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

    def _refused(self, state: _State, reason: str) -> Answer:
        chunks = state.retrieval.chunks if state.retrieval else []
        return Answer(
            question=state.question,
            standalone_question=state.standalone,
            answer=refusal_text(reason),
            refused=True,
            citations=[],
            retrieved=retrieved_info(chunks),
            llm=state.spec.label,
            timings=Timings(
                retrieve_s=round(state.retrieve_s, 4),
                total_s=round(time.perf_counter() - state.started, 4),
            ),
            mode="refused",
        )


_DEFAULT: dict[tuple[str, ...], RAG] = {}
_DEFAULT_LOCK = threading.Lock()


def get_rag(settings: Settings | None = None) -> RAG:
    """A shared pipeline per index (models and caches load once per process)."""
    settings = settings or load_settings()
    key = (str(settings.index_dir.resolve()), settings.chroma_url or "", settings.collection)
    with _DEFAULT_LOCK:
        if key not in _DEFAULT or _DEFAULT[key].settings != settings:
            _DEFAULT[key] = RAG(settings)
        return _DEFAULT[key]


def ask(
    question: str,
    history: History | None = None,
    *,
    settings: Settings | None = None,
    k: int | None = None,
    llm: str | None = None,
    sources: list[str] | None = None,
) -> Answer:
    """Answer a question from the configured index: ``rag.answer.ask("…", history=[...])``."""
    return get_rag(settings).ask(question, history, k=k, llm=llm, sources=sources)
