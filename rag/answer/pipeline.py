"""The answering pipeline as a LangChain chain:

    prepare (clean, pick the model, condense follow-ups)
      → retrieve (a ``BaseRetriever``: HybridRetriever by default, any other may be given)
      → read (the trained reader ranks sentences and decides whether the documents answer)
      → write (``ChatPromptTemplate`` | chat model, via ``RunnablePassthrough.assign``)
      → check (sentence by sentence; only checked text is streamed; see rag.answer.check)

``RAG.chain()`` is that runnable (``invoke``/``batch`` give Answers, ``stream``/``astream``/
``astream_events`` give StreamEvents); ``RAG.ask`` and ``RAG.stream`` are the plain-Python way
in, used by the CLI, the UI and the evaluation alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import BasePromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnablePassthrough,
)

from rag.answer.check import CheckAnswer, refusal_text
from rag.answer.condense import (
    History,
    condense_heuristic,
    condense_with_llm,
    is_follow_up,
    text_of,
)
from rag.answer.loading import Loader
from rag.answer.models import Answer, Candidate, StreamEvent
from rag.answer.prompt import ANSWER_PROMPT, numbered_context
from rag.answer.reading import SentenceReader
from rag.answer.state import Turn, turn_of
from rag.answer.text import clean_question
from rag.answer.verify import Verifier
from rag.config import RagError, Settings, load_settings
from rag.llm import LLMSpec, LLMUnavailableError, endpoint, load_chat_model, parse_spec
from rag.reader import READER_DIR, Reader, get_reader, reader_backend_for
from rag.retrieval import HybridRetriever, HybridSearcher, RetrievedChunk
from rag.store import embedder_for

__all__ = ["RAG", "ask", "get_rag", "refusal_text"]


class RAG:
    """The question-answering pipeline over one index; load once, ask many times (thread-safe).

    >>> bot = RAG()                                      # doctest: +SKIP
    >>> answer = bot.ask("What share of ...?")           # doctest: +SKIP
    >>> answer.answer, answer.citations                  # doctest: +SKIP

    Each part of the chain can be swapped: ``retriever`` (any LangChain ``BaseRetriever``;
    default: hybrid dense + BM25 over the index), ``chat_model`` (any LangChain chat model,
    instead of ``settings.llm``; checked the same way) and ``prompt`` (a prompt template taking
    ``{context}`` and ``{question}``).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        searcher: HybridSearcher | None = None,
        chat_model: BaseChatModel | None = None,
        reader: Reader | None = None,
        *,
        retriever: BaseRetriever | None = None,
        prompt: BasePromptTemplate | None = None,
    ):
        self.settings = settings or load_settings()
        self.embedder = embedder_for(self.settings)
        self.searcher = searcher or HybridSearcher(self.settings, self.embedder)
        self.retriever = retriever or HybridRetriever(searcher=self.searcher)
        self.prompt = prompt or ANSWER_PROMPT
        self.verifier = Verifier(self.embedder)
        # The reader never runs in int8 whatever the embedding precision: its thresholds were
        # calibrated on fp32 scores (ONNX Runtime reproduces them, OpenVINO's bf16 products
        # stay within the calibration's validation tolerances; torch is the fallback).
        reader_backend = reader_backend_for(self.settings.encoder_backend)
        self.reader = reader or get_reader(self.settings.reader_dir or READER_DIR, reader_backend)
        self.chat_model = chat_model
        if chat_model is not None:
            name = getattr(chat_model, "_llm_type", None) or type(chat_model).__name__
            self.default_spec = LLMSpec("custom", str(name))
        else:
            self.default_spec = parse_spec(self.settings.llm)
        self._chain: Runnable | None = None
        self.loader = Loader(self.embedder, self.reader, self.searcher)
        self.sentences = SentenceReader(self.reader, self.embedder, self.verifier)

    def load(self, spec: LLMSpec | None = None) -> float:
        """Load what answering needs now rather than on the first question: the embedding
        model, the reader, the keyword index, and ``spec``'s chat model weights when they are
        local. Returns the seconds spent (0.0 when all was loaded already)."""
        spec = spec or self.default_spec
        return self.loader.load(spec.label, lambda: self.model_for(spec))

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
        return self.chain().invoke(self._inputs(question, history, k, llm, sources))

    def stream(
        self,
        question: str,
        history: History | None = None,
        *,
        k: int | None = None,
        llm: str | None = None,
        sources: list[str] | None = None,
        drafts: bool = False,
    ) -> Iterator[StreamEvent]:
        """The answer as it is made: ``stage`` events (searching, writing), each checked
        ``sentence`` with its [n] as soon as it passed, then one ``final`` with the Answer.
        ``drafts=True`` adds the model's raw, unchecked ``token`` events."""
        yield StreamEvent("stage", text="searching")
        inputs = self._inputs(question, history, k, llm, sources)
        yield from self.chain().stream({**inputs, "drafts": drafts})

    def chain(self) -> Runnable:
        """The pipeline as a LangChain runnable. Input: ``{"question", "history"?, "k"?,
        "llm"?, "sources"?, "drafts"?}``. ``invoke``/``batch`` return the :class:`Answer`;
        ``stream``/``astream`` yield :class:`StreamEvent` s, the last being ``final``."""
        if self._chain is None:
            self._chain = (
                RunnableLambda(self._prepare, name="condense")
                | RunnableLambda(self._retrieve, name="retrieve")
                | RunnableLambda(self._read, name="read")
                | RunnablePassthrough.assign(draft=RunnableLambda(self._writer, name="write"))
                | CheckAnswer(self.reader, self.verifier)
            ).with_config(run_name="rag")
        return self._chain

    # Steps -----------------------------------------------------------------------------

    @staticmethod
    def _inputs(
        question: str,
        history: History | None,
        k: int | None,
        llm: str | None,
        sources: list[str] | None,
    ) -> dict[str, Any]:
        return {"question": question, "history": history, "k": k, "llm": llm, "sources": sources}

    def _prepare(self, inputs: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        """Clean the question, pick the backend and rewrite a follow-up as a standalone question."""
        if isinstance(inputs, str):
            inputs = {"question": inputs}
        text = clean_question(inputs["question"], self.settings.max_question_chars)
        llm = inputs.get("llm")
        spec = parse_spec(llm) if llm else self.default_spec
        turn = Turn(
            question=text,
            history=inputs.get("history"),
            k=int(inputs.get("k") or self.settings.k),
            sources=inputs.get("sources"),
            spec=spec,
            model=self.model_for(spec),
            drafts=bool(inputs.get("drafts")),
        )
        turn.load_s = self.load(spec)
        turn.standalone = self.condense(text, turn.history, spec, config)
        return {"turn": turn}

    def condense(
        self,
        question: str,
        history: History | None,
        spec: LLMSpec,
        config: RunnableConfig | None = None,
    ) -> str:
        """A standalone question: rewritten by backends trusted to do it, else heuristically."""
        if not history:
            return question
        if spec.capabilities.rewrites_follow_ups and is_follow_up(question):
            model = self.model_for(spec)
            if model is not None:
                return condense_with_llm(model, question, history)
        return condense_heuristic(question, history)

    def _retrieve(self, state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        """The retriever's Documents for the standalone question, as RetrievedChunks; for a
        question condensed with the conversation, also those for the question as asked (which
        ``read`` prefers when the reader is surer of them: "How do I install pypdf so that it
        ..." holds an "it" but needs no earlier question)."""
        turn = turn_of(state)
        began = time.perf_counter()
        turn.chunks, turn.best_dense = self._search(turn, turn.standalone, config)
        if turn.standalone != turn.question:
            turn.own_chunks, turn.own_best_dense = self._search(turn, turn.question, config)
        turn.retrieve_s = time.perf_counter() - began
        return state

    def _search(
        self, turn: Turn, query: str, config: RunnableConfig
    ) -> tuple[list[RetrievedChunk], float]:
        """The retrieved chunks for ``query`` and its best dense similarity (``_best_dense``)."""
        retriever = self.retriever
        if isinstance(retriever, HybridRetriever):
            documents = retriever.invoke(query, config, k=turn.k, sources=turn.sources)
        else:
            documents = [
                document
                for document in retriever.invoke(query, config)
                if not turn.sources or document.metadata.get("source") in turn.sources
            ][: turn.k]
        chunks = [RetrievedChunk.from_document(document) for document in documents]
        return chunks, self._best_dense(query, chunks, documents)

    def _best_dense(
        self, question: str, chunks: list[RetrievedChunk], documents: list[Document]
    ) -> float:
        """The best dense similarity of the question in the collection (a signal of the
        answer gate): reported by the hybrid retriever, else measured on what was retrieved."""
        reported = [d.metadata.get("query_best_dense") for d in documents]
        if reported and all(value is not None for value in reported):
            return float(max(reported))
        if not chunks:
            return 0.0
        query = self.embedder.encode_query(question)
        missing = [chunk for chunk in chunks if chunk.dense_score is None]
        if missing:
            vectors = self.embedder.encode([chunk.search_text for chunk in missing])
            for chunk, score in zip(missing, vectors @ query, strict=True):
                chunk.dense_score = float(score)
        return float(np.max([chunk.dense_score for chunk in chunks]))

    def _read(self, state: dict[str, Any]) -> dict[str, Any]:
        """Rank the retrieved sentences; decide whether the documents answer; build the
        numbered context for the model when one writes."""
        turn = turn_of(state)
        question, turn.ranked = self.read(turn)
        turn.context_score = self.context_score(question, turn.ranked, turn.chunks)
        turn.refusal = self._refusal_reason(turn)
        if turn.writes:
            budget = self.context_budget(turn.spec)
            turn.context = numbered_context(
                turn.chunks, self.excerpts(turn.chunks, turn.ranked, budget)
            )
        turn.read_done = time.perf_counter()
        return state

    def _writer(self, state: dict[str, Any]) -> Runnable | str:
        """prompt | model | text for this turn's backend ("" when no model writes)."""
        turn = turn_of(state)
        if not turn.writes:
            return ""
        assert turn.model is not None

        def prompt_inputs(state: dict[str, Any]) -> dict[str, str]:
            turn = turn_of(state)
            return {"context": turn.context, "question": turn.standalone}

        model, spec = turn.model, turn.spec

        def failed(error: Exception) -> LLMUnavailableError:
            where = endpoint(spec)
            return LLMUnavailableError(
                f"the LLM {spec.label}{' at ' + where if where else ''} failed: "
                f"{type(error).__name__}: {str(error)[:200]}. Check that it is running, or "
                "use --llm extractive to answer without an LLM."
            )

        def generate(prompt: Any, config: RunnableConfig) -> Iterator[str]:
            """The model's draft, streamed; a backend failure becomes one clear line."""
            try:
                for piece in model.stream(prompt, config):
                    if text := text_of(piece.content):
                        yield text
            except RagError:
                raise
            except Exception as error:
                raise failed(error) from None

        async def agenerate(prompt: Any, config: RunnableConfig) -> AsyncIterator[str]:
            try:
                async for piece in model.astream(prompt, config):
                    if text := text_of(piece.content):
                        yield text
            except RagError:
                raise
            except Exception as error:
                raise failed(error) from None

        return (
            RunnableLambda(prompt_inputs, name="prompt_inputs")
            | self.prompt
            | RunnableLambda(generate, afunc=agenerate, name="generate")
        )

    def context_budget(self, spec: LLMSpec) -> int | None:
        """Characters of source text to put in the prompt (None: whole chunks)."""
        if self.settings.llm_context_chars is not None:
            return self.settings.llm_context_chars or None
        return spec.capabilities.context_chars

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

    @property
    def answer_threshold(self) -> float:
        """The answerability below which the documents are taken not to answer (calibrated on
        held-out validation articles unless RAG_ANSWER_THRESHOLD overrides it)."""
        if self.settings.answer_threshold is not None:
            return self.settings.answer_threshold
        return self.reader.calibration.answer_threshold

    def answerability(self, turn: Turn) -> float:
        """How likely the passages answer the question (a logit; see rag.reader.Calibration)."""
        if not turn.ranked:
            return float("-inf")
        return self.reader.calibration.answerability(turn.context_score, turn.best_dense)

    def rank_sentences(self, question: str, chunks: list[RetrievedChunk]) -> list[Candidate]:
        """The retrieved chunks' sentences ranked for ``question`` (``SentenceReader.rank``)."""
        return self.sentences.rank(question, chunks)

    def in_context_scores(
        self, question: str, candidates: list[Candidate], chunks: list[RetrievedChunk]
    ) -> list[float]:
        """The reader's score of each candidate read after the sentence before it."""
        return self.sentences.in_context_scores(question, candidates, chunks)

    def context_score(
        self, question: str, ranked: list[Candidate], chunks: list[RetrievedChunk]
    ) -> float:
        """What decides whether the documents answer (``SentenceReader.context_score``)."""
        return self.sentences.context_score(question, ranked, chunks)

    def _refusal_reason(self, turn: Turn) -> str | None:
        if not turn.ranked:
            if not turn.chunks and self.searcher.is_empty():
                return "the index is empty"
            return "no passage was found for it"
        if self.answerability(turn) < self.answer_threshold:
            return "no passage answers it"
        return None

    def read(self, turn: Turn) -> tuple[str, list[Candidate]]:
        """The question as read and the reader's ranking of the retrieved sentences for it.

        A question condensed with the previous one ("When did the ferry start? And what about
        the bridge?") is read as asked, over the passages retrieved for it as asked, when the
        documents answer it so (the calibrated answer decision passes) more surely than they
        answer the condensed question: it stood on its own, and the turn drops the condensed
        form and its passages. Else it is read as asked over the passages the condensed
        question retrieved, when the reader finds an answer there; else as condensed."""
        threshold = self.reader.calibration.sentence_threshold
        condensed: list[Candidate] | None = None  # ranked once, when needed
        if turn.standalone != turn.question and turn.own_chunks:
            own = self.rank_sentences(turn.question, turn.own_chunks)
            own_score = self.reader.calibration.answerability(
                self.context_score(turn.question, own, turn.own_chunks), turn.own_best_dense
            )
            if own_score >= self.answer_threshold:
                condensed = self.rank_sentences(turn.standalone, turn.chunks)
                condensed_score = self.reader.calibration.answerability(
                    self.context_score(turn.standalone, condensed, turn.chunks), turn.best_dense
                )
                if own_score > condensed_score:
                    turn.standalone, turn.chunks = turn.question, turn.own_chunks
                    turn.best_dense = turn.own_best_dense
                    return turn.question, own
        chunks = turn.chunks
        if not chunks:
            return turn.standalone, []
        if turn.standalone != turn.question:
            own = self.rank_sentences(turn.question, chunks)
            if own and own[0].score >= threshold:
                return turn.question, own
        if condensed is None:
            condensed = self.rank_sentences(turn.standalone, chunks)
        return turn.standalone, condensed


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
