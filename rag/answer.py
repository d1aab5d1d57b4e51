"""Answering: condense → retrieve → numbered context → generate → verify → format.

Small local models hallucinate and cite loosely, so nothing they say is shown unchecked: every
answer sentence is attributed to the retrieved chunk that supports it best (lexical and
embedding support, numbers must match), unsupported sentences are dropped, and when nothing
supported is left the answer falls back to sentences quoted from the documents, or to a refusal.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda
from pydantic import BaseModel, Field

from rag.chunking import sentence_spans
from rag.config import RagError, Settings, load_settings
from rag.embeddings import Embedder, get_embedder
from rag.llm import LLMSpec, LLMUnavailableError, endpoint, load_chat_model, parse_spec
from rag.retrieval import HybridSearcher, RetrievalResult, RetrievedChunk

# Thresholds of the verifier (see README "How answers are checked"); calibrated on the
# evaluation sets in evals/, not on any one document.
MIN_SUPPORT = 0.55
MIN_EXTRACTIVE = 0.38
EXTRACTIVE_KEEP_RATIO = 0.85
MIN_RELATIVE_RELEVANCE = 0.7
WEAK_MODEL_RELATIVE_RELEVANCE = 0.95
WEAK_MODEL_MIN_SUPPORT = 0.75
LOCAL_CONTEXT_CHARS = 600
REFUSAL_PREFIX = "The documents don't say"
MAX_EXTRACTIVE_SENTENCES = 2


class QuestionError(RagError):
    """The question cannot be asked (empty, or nothing left after cleaning)."""


# Public data model (the `rag ask --json` contract) -------------------------------------------


class Citation(BaseModel):
    n: int
    source: str
    chunk_id: str
    page: int | None = None
    start: int = Field(description="Start of the supporting span, as a char offset in the source.")
    end: int
    quote: str = Field(description="The exact supporting span of the source text.")
    chunk_start: int = Field(0, exclude=True)
    chunk_index: int = Field(0, exclude=True, description="Position of the chunk in its file.")
    chunk_text: str = Field("", exclude=True)
    title: str = Field("", exclude=True)


class RetrievedInfo(BaseModel):
    chunk_id: str
    source: str
    score: float
    text: str
    page: int | None = Field(None, exclude=True)
    title: str = Field("", exclude=True)
    dense_score: float | None = Field(None, exclude=True)


class Timings(BaseModel):
    retrieve_s: float = 0.0
    generate_s: float = 0.0
    total_s: float = 0.0


class Answer(BaseModel):
    question: str
    standalone_question: str
    answer: str
    refused: bool
    citations: list[Citation] = Field(default_factory=list)
    retrieved: list[RetrievedInfo] = Field(default_factory=list)
    llm: str
    timings: Timings = Field(default_factory=Timings)
    draft: str = Field("", exclude=True, description="The unverified model output.")
    mode: str = Field("", exclude=True, description="generated | extractive | refused")

    def to_dict(self) -> dict[str, Any]:
        """Exactly the ``rag ask --json`` object."""
        return self.model_dump(mode="json")


@dataclass
class StreamEvent:
    """``token``: more draft text; ``final``: the verified answer (replaces the draft)."""

    kind: Literal["token", "final"]
    text: str = ""
    answer: Answer | None = None


# Text helpers ----------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:[.,'’][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_REFUSAL = re.compile(
    r"\b(i (do not|don't|dont) know|not (mentioned|provided|stated|specified|included) in|"
    r"(documents?|sources?|context|text) (do(es)? not|don't|doesn't) (say|mention|contain|"
    r"provide|specify|state)|no (information|mention)|cannot (answer|find|determine)|"
    r"unable to (answer|find|determine))\b",
    re.IGNORECASE,
)


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    extra = {"according", "also", "much", "many", "whose", "roughly", "approximately", "about"}
    return frozenset(STOPWORDS_EN_PLUS) | extra


_STOP = _stopwords()
_STEMMER_LOCAL = threading.local()


def _stem(word: str) -> str:
    stemmer = getattr(_STEMMER_LOCAL, "stemmer", None)
    if stemmer is None:
        import Stemmer

        stemmer = _STEMMER_LOCAL.stemmer = Stemmer.Stemmer("english")
    return stemmer.stemWord(word)


def content_terms(text: str) -> list[str]:
    """Lower-cased, stemmed words that carry content (stopwords dropped)."""
    words = (word.lower() for word in _WORD.findall(text))
    return [_stem(word) for word in words if word not in _STOP and not word.isdigit()]


def numbers_in(text: str) -> set[str]:
    return {number.replace(",", "") for number in _NUMBER.findall(text)}


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
    if not _WORD.search(text):
        raise QuestionError("the question has no words in it: type a question about your documents")
    if len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars].rstrip()
    return text


# Follow-up questions ---------------------------------------------------------------------

_FOLLOW_UP_START = re.compile(
    r"^(and|also|but|so|then|what about|how about|and what|what else|why|how so|which ones?)\b",
    re.IGNORECASE,
)
_ANAPHORA = re.compile(
    r"\b(it|its|they|them|their|theirs|this|that|these|those|he|she|him|her|his|hers|there|"
    r"such|same|former|latter|the above|above)\b",
    re.IGNORECASE,
)

History = Sequence[Any]


def _history_turns(history: History | None) -> list[tuple[str, str]]:
    """(user, assistant) pairs from history given as pairs or as role/content messages."""
    if not history:
        return []
    turns: list[tuple[str, str]] = []
    pending_user: str | None = None
    for item in history:
        if isinstance(item, dict) or hasattr(item, "role"):
            role = item["role"] if isinstance(item, dict) else item.role
            content = item["content"] if isinstance(item, dict) else item.content
            content = content if isinstance(content, str) else _text_of(content)
            if role == "user":
                if pending_user is not None:
                    turns.append((pending_user, ""))
                pending_user = content
            elif role == "assistant" and pending_user is not None:
                turns.append((pending_user, content))
                pending_user = None
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            turns.append((_text_of(item[0]), _text_of(item[1])))
    if pending_user is not None:
        turns.append((pending_user, ""))
    return turns


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return " ".join(_text_of(part) for part in content)
    return "" if content is None else str(content)


def is_follow_up(question: str) -> bool:
    """Does the question lean on the conversation (pronouns, 'and what about', very short)?"""
    words = _WORD.findall(question)
    return bool(
        _FOLLOW_UP_START.search(question.strip()) or _ANAPHORA.search(question) or len(words) <= 3
    )


def condense_heuristic(question: str, history: History | None) -> str:
    """Standalone question without an LLM: a follow-up carries the previous question with it."""
    turns = _history_turns(history)
    if not turns or not is_follow_up(question):
        return question
    # A follow-up refers to the last question that got an answer, not to a refused one.
    answered = [user for user, reply in turns if not reply.startswith(REFUSAL_PREFIX)]
    previous = (answered[-1] if answered else turns[-1][0]).strip()
    if not previous:
        return question
    return f"{previous.rstrip()} {question}"


_CONDENSE_PROMPT = (
    "Rewrite the last user question as one standalone question that can be understood "
    "without the conversation. Reply with the question only.\n\nConversation:\n{conversation}"
    "\n\nLast question: {question}\nStandalone question:"
)


def condense_with_llm(model: BaseChatModel, question: str, history: History | None) -> str:
    """Standalone question written by a capable LLM; the heuristic when it gives nothing usable."""
    turns = _history_turns(history)
    if not turns:
        return question
    conversation = "\n".join(
        f"User: {user}\nAssistant: {assistant[:500]}" for user, assistant in turns[-3:]
    )
    prompt = _CONDENSE_PROMPT.format(conversation=conversation, question=question)
    try:
        reply = str(model.invoke([HumanMessage(content=prompt)]).content).strip()
    except Exception:
        return condense_heuristic(question, history)
    reply = reply.splitlines()[0].strip().strip('"') if reply else ""
    if not reply or len(reply) > 4 * len(question) + 200:
        return condense_heuristic(question, history)
    return reply


# Verification ----------------------------------------------------------------------------


@dataclass
class Support:
    """The best supporting span for an answer sentence."""

    chunk_index: int  # 0-based position in the retrieved list
    start: int  # absolute offsets in the source text
    end: int
    score: float


@dataclass
class _ChunkSentences:
    spans: list[tuple[int, int]]  # offsets within the chunk text
    windows: list[tuple[int, int]]  # 1- and 2-sentence windows, offsets within the chunk
    terms: list[set[str]]
    numbers: list[set[str]]
    vectors: np.ndarray


class Verifier:
    """Scores how well retrieved chunks support answer sentences; caches chunk sentence vectors."""

    def __init__(self, embedder: Embedder, cache_size: int = 2048):
        self.embedder = embedder
        self._cache: OrderedDict[str, _ChunkSentences] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def chunk_sentences(self, chunk: RetrievedChunk) -> _ChunkSentences:
        with self._lock:
            cached = self._cache.get(chunk.chunk_id)
            if cached is not None:
                self._cache.move_to_end(chunk.chunk_id)
                return cached
        spans = sentence_spans(chunk.text) or [(0, len(chunk.text))]
        windows = list(spans) + [(spans[i][0], spans[i + 1][1]) for i in range(len(spans) - 1)]
        texts = [chunk.text[a:b] for a, b in windows]
        entry = _ChunkSentences(
            spans=spans,
            windows=windows,
            terms=[set(content_terms(text)) for text in texts],
            numbers=[numbers_in(text) for text in texts],
            vectors=self.embedder.encode(texts),
        )
        with self._lock:
            self._cache[chunk.chunk_id] = entry
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return entry

    def support(
        self, sentences: list[str], chunks: list[RetrievedChunk]
    ) -> list[list[tuple[float, int, int]]]:
        """For each sentence, per chunk: (support score, window start, window end) of the best
        window (offsets within the chunk). Support blends the share of the sentence's content
        words found in the window with embedding similarity; a number absent from the window
        zeroes it."""
        if not sentences or not chunks:
            return [[] for _ in sentences]
        vectors = self.embedder.encode(sentences)
        table: list[list[tuple[float, int, int]]] = []
        per_chunk = [self.chunk_sentences(chunk) for chunk in chunks]
        for sentence, vector in zip(sentences, vectors, strict=True):
            terms = set(content_terms(sentence))
            numbers = numbers_in(sentence)
            row: list[tuple[float, int, int]] = []
            for info in per_chunk:
                similarities = info.vectors @ vector
                best = (0.0, 0, 0)
                single = len(info.spans)
                for w, (a, b) in enumerate(info.windows):
                    # Numbers must all appear in one source sentence: a two-sentence window
                    # would let "70%" borrow "90%" from its neighbour.
                    if numbers and (w >= single or not numbers <= info.numbers[w]):
                        continue
                    lexical = len(terms & info.terms[w]) / len(terms) if terms else 0.0
                    score = 0.5 * lexical + 0.5 * float(similarities[w])
                    if score > best[0]:
                        best = (score, a, b)
                row.append(best)
            table.append(row)
        return table


_LEADING_MARKERS = re.compile(r"^(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])+")


def _marker_numbers(text: str) -> list[int]:
    return [int(n) for group in _MARKER.findall(text) for n in re.split(r"[,;]", group)]


def split_answer(text: str) -> list[tuple[str, list[int]]]:
    """Answer sentences with the [n] markers each carried (markers removed from the text).

    A marker right after a sentence's final period ("First. [1] Second. [2]") belongs to the
    sentence before it."""
    pieces: list[tuple[str, list[int]]] = []
    for a, b in sentence_spans(text):
        sentence = text[a:b]
        lead = _LEADING_MARKERS.match(sentence)
        if lead and pieces:
            pieces[-1][1].extend(_marker_numbers(lead.group(0)))
            sentence = sentence[lead.end() :]
        markers = _marker_numbers(sentence)
        clean = _MARKER.sub("", sentence).strip()
        if not _WORD.search(clean):
            if pieces and markers:  # a marker that trailed the sentence end: "… sentence. [2]"
                pieces[-1][1].extend(markers)
            continue
        pieces.append((clean, markers))
    return pieces


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
    ranked: list[tuple[float, int, int, int]] = field(default_factory=list)


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
    ):
        """``chat_model``: any LangChain chat model to answer with instead of ``settings.llm``
        (its answers are verified the same way)."""
        self.settings = settings or load_settings()
        self.embedder = get_embedder(self.settings)
        self.searcher = searcher or HybridSearcher(self.settings, self.embedder)
        self.verifier = Verifier(self.embedder)
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
        reason = self._refusal_reason(state.standalone, retrieval)
        focus = state.question if state.standalone != state.question else None
        ranked = self.rank_sentences(state.standalone, chunks, focus) if reason is None else []
        if reason is None and (not ranked or ranked[0][0] < MIN_EXTRACTIVE * EARLY_REFUSAL_RATIO):
            reason = "no passage comes close to answering it"
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
        ranked: list[tuple[float, int, int, int]],
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
        for _, index, a, b in ranked:
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

    def _refusal_reason(self, question: str, retrieval: RetrievalResult) -> str | None:
        if not retrieval.chunks:
            return "the index is empty" if self.searcher.store.count() == 0 else None
        names = key_terms(question)
        missing = missing_key_terms(question, retrieval.chunks, names)
        if missing:
            return "they never mention " + ", ".join(missing)
        # Passages naming everything the question names are worth reading even when their
        # embedding is far from the question ("Who is Antony Blinken?" vs a long paragraph).
        if retrieval.best_dense < self.settings.min_relevance and not names:
            return "no passage is close enough to the question"
        return None

    def verify(self, state: _State, draft: str, generate_started: float) -> Answer:
        """Keep the draft's supported, on-topic sentences (re-cited); else quote; else refuse."""
        chunks = state.retrieval.chunks if state.retrieval else []
        generate_s = time.perf_counter() - generate_started
        focus = state.question if state.standalone != state.question else None
        ranked = state.ranked or self.rank_sentences(state.standalone, chunks, focus)
        best_quote = ranked[0][0] if ranked else 0.0
        pieces = split_answer(draft) if draft.strip() else []
        said_unknown = bool(_REFUSAL.search(draft)) and len(pieces) <= 2
        if said_unknown and state.spec.kind != "local":
            # A capable model that read the passages and found no answer is believed; the tiny
            # default model says "I don't know" too readily, so its answer is quoted instead.
            answer = self._refused(state, "the passages found do not answer it")
            answer.draft = draft
            answer.timings.generate_s = round(generate_s, 4)
            return answer
        # The tiny default model's sentences must be near-verbatim and answer at least as well
        # as the best quote; capable models may paraphrase.
        weak = state.spec.kind == "local"
        relative = WEAK_MODEL_RELATIVE_RELEVANCE if weak else MIN_RELATIVE_RELEVANCE
        min_support = WEAK_MODEL_MIN_SUPPORT if weak else MIN_SUPPORT
        kept: list[tuple[str, Support]] = []
        if pieces and not said_unknown:
            texts = [_drop_lead_in(text) for text, _ in pieces]
            table = self.verifier.support(texts, chunks)
            relevance = self.relevance(texts, state.standalone, focus)
            for text, (_, markers), row, on_topic in zip(
                texts, pieces, table, relevance, strict=True
            ):
                support = _choose_support(row, markers, chunks)
                if (
                    support is not None
                    and support.score >= min_support
                    and not (weak and new_words(text, support, chunks))
                    and on_topic >= max(MIN_EXTRACTIVE, relative * best_quote)
                    and adds_information(text, focus or state.standalone)
                ):
                    kept.append((text, support))
        mode = "generated"
        if not kept:
            kept = self.extractive(ranked, chunks)
            mode = "extractive"
        if not kept:
            answer = self._refused(state, "no sentence in the retrieved passages answers it")
            answer.draft = draft
            answer.timings.generate_s = round(generate_s, 4)
            return answer
        text, citations = _compose(kept, chunks)
        return Answer(
            question=state.question,
            standalone_question=state.standalone,
            answer=text,
            refused=False,
            citations=citations,
            retrieved=_retrieved_info(chunks),
            llm=state.spec.label,
            timings=Timings(
                retrieve_s=round(state.retrieve_s, 4),
                generate_s=round(generate_s, 4),
                total_s=round(time.perf_counter() - state.started, 4),
            ),
            draft=draft,
            mode=mode,
        )

    def relevance(self, texts: list[str], question: str, focus: str | None = None) -> list[float]:
        """How well each text answers the question: embedding similarity blended with the
        share of the question's content words (``focus``'s, for a condensed follow-up) it has."""
        if not texts:
            return []
        question_terms = self.term_weights(focus or question) or self.term_weights(question)
        query_vector = self.embedder.encode_query(question)
        vectors = self.embedder.encode(texts)
        asked = focus or question
        return [
            _relevance(float(vector @ query_vector), question_terms, set(content_terms(text)))
            * answer_type_factor(asked, text)
            for text, vector in zip(texts, vectors, strict=True)
        ]

    def term_weights(self, question: str) -> dict[str, float]:
        """The question's content words weighted by rarity in the index (IDF): matching
        "ammunition" says more than matching "China" in a corpus about China."""
        terms = set(content_terms(question))
        if not terms:
            return {}
        try:
            return self.searcher.bm25().idf(terms)
        except RagError:
            return dict.fromkeys(terms, 1.0)

    def rank_sentences(
        self, question: str, chunks: list[RetrievedChunk], focus: str | None = None
    ) -> list[tuple[float, int, int, int]]:
        """Every sentence of the retrieved chunks as (relevance, chunk index, start, end within
        the chunk), best first. A lead-in ending in ':' carries the list that follows it;
        headings rank lower."""
        if not chunks:
            return []
        asked = focus or question
        question_terms = self.term_weights(asked) or self.term_weights(question)
        query_vector = self.embedder.encode_query(question)
        candidates: list[tuple[float, int, int, int]] = []
        for index, chunk in enumerate(chunks):
            info = self.verifier.chunk_sentences(chunk)
            count = len(info.spans)
            similarities = info.vectors[:count] @ query_vector
            for s, (a, b) in enumerate(info.spans):
                last = _list_end(chunk.text, info.spans, s)
                terms = set().union(*info.terms[s : last + 1])
                similarity = float(similarities[s : last + 1].max())
                score = _relevance(similarity, question_terms, terms)
                score *= answer_type_factor(asked, chunk.text[a : info.spans[last][1]])
                if _is_heading(chunk.text[a:b]) and last == s:
                    score *= HEADING_PENALTY
                candidates.append((score, index, a, info.spans[last][1]))
        candidates.sort(key=lambda item: item[0], reverse=True)
        return candidates

    def extractive(
        self, ranked: list[tuple[float, int, int, int]], chunks: list[RetrievedChunk]
    ) -> list[tuple[str, Support]]:
        """The best-ranked sentences, quoted (at most a few, distinct, in document order)."""
        best = ranked[0][0] if ranked else 0.0
        if best < MIN_EXTRACTIVE:
            return []
        chosen: list[tuple[float, int, int, int]] = []
        seen: list[tuple[str, int, int]] = []
        for score, index, a, b in ranked:
            if score < best * EXTRACTIVE_KEEP_RATIO or len(chosen) >= MAX_EXTRACTIVE_SENTENCES:
                break
            source, start, end = (
                chunks[index].source,
                chunks[index].start + a,
                chunks[index].start + b,
            )
            # Overlapping chunks hold the same sentence twice; a list item is inside its lead-in.
            if not any(
                source == other and start < other_end and other_start < end
                for other, other_start, other_end in seen
            ):
                seen.append((source, start, end))
                chosen.append((score, index, a, b))
        chosen.sort(key=lambda item: (item[1], item[2]))
        return [
            (
                chunks[index].text[a:b],
                Support(index, chunks[index].start + a, chunks[index].start + b, score),
            )
            for score, index, a, b in chosen
        ]

    def _refused(self, state: _State, reason: str) -> Answer:
        chunks = state.retrieval.chunks if state.retrieval else []
        return Answer(
            question=state.question,
            standalone_question=state.standalone,
            answer=refusal_text(reason),
            refused=True,
            citations=[],
            retrieved=_retrieved_info(chunks),
            llm=state.spec.label,
            timings=Timings(
                retrieve_s=round(state.retrieve_s, 4),
                total_s=round(time.perf_counter() - state.started, 4),
            ),
            mode="refused",
        )


# Capitals named for their country ("Beijing says…"): general world knowledge, not corpus-specific.
METONYMS = {
    "beijing": ("china", "chinese"),
    "washington": ("united states", "u.s.", "us", "america"),
    "moscow": ("russia", "russian"),
    "kremlin": ("russia", "russian"),
    "kyiv": ("ukraine", "ukrainian"),
    "kiev": ("ukraine", "ukrainian"),
    "london": ("united kingdom", "britain", "british", "uk"),
    "paris": ("france", "french"),
    "berlin": ("germany", "german"),
    "tokyo": ("japan", "japanese"),
    "brussels": ("european union", "eu"),
    "seoul": ("south korea", "korean"),
    "pyongyang": ("north korea", "korean"),
    "tehran": ("iran", "iranian"),
    "taipei": ("taiwan", "taiwanese"),
    "new delhi": ("india", "indian"),
    "delhi": ("india", "indian"),
    "ottawa": ("canada", "canadian"),
    "canberra": ("australia", "australian"),
    "rome": ("italy", "italian"),
    "madrid": ("spain", "spanish"),
    "ankara": ("turkey", "turkish"),
    "jerusalem": ("israel", "israeli"),
    "white house": ("united states", "u.s.", "us", "president"),
    "pentagon": ("united states", "u.s.", "us", "defense", "military"),
}
_NOT_NAMES = frozenset(("please", "tell", "i", "and", "but", "also", "so", "then"))
_CONTRACTION = re.compile(r"^i['’]|['’](ve|m|ll|re|d|s|t)$", re.IGNORECASE)
_NAME_PHRASE = re.compile(
    r"\b[A-Z][\w'’-]*(?:\s+(?:of|the|and|for|&|de|du|van|von)?\s*(?:[A-Z][\w'’-]*|\d+))*"
)


def acronyms(text: str) -> set[str]:
    """Acronyms of the capitalised phrases in text: "Group of 7" → "g7", "United States" → "us"."""
    found: set[str] = set()
    for match in _NAME_PHRASE.finditer(text):
        words = match.group(0).split()
        letters = "".join(w[0] if w[0].isupper() else w if w.isdigit() else "" for w in words)
        if len(letters) >= 2:
            found.add(letters.lower())
    return found


def key_terms(question: str) -> list[str]:
    """Names (capitalised words not starting a sentence, acronyms) and numbers in a question."""
    key: list[str] = []
    for start, end in sentence_spans(question):
        for position, word in enumerate(_WORD.findall(question, start, end)):
            is_name = word[:1].isupper() and (position > 0 or word.isupper()) and len(word) > 1
            is_name = is_name and word.lower() not in _STOP and word.lower() not in _NOT_NAMES
            is_name = is_name and not _CONTRACTION.search(word)
            if is_name or (word[:1].isdigit() and len(word) >= 2):
                key.append(word)
    return key


def missing_key_terms(
    question: str, chunks: list[RetrievedChunk], names: list[str] | None = None
) -> list[str]:
    """Names and numbers the question relies on that no retrieved chunk contains.

    A question about "Putin" answered from passages that never name Putin is unanswerable, however
    close the passages are in topic. Names are capitalised words not starting a sentence (or
    acronyms); numbers are years and figures. A name counts as present when the passages have it,
    its stem, a phrase it abbreviates ("G7" for "Group of 7"), or the country a capital stands
    for ("Beijing" for China).
    """
    key = key_terms(question) if names is None else names
    if not key:
        return []
    original = " ".join(chunk.search_text for chunk in chunks)
    haystack = original.lower()
    haystack_terms = set(content_terms(haystack))
    abbreviations = acronyms(original)
    missing = []
    for word in key:
        lowered = word.lower()
        if lowered in haystack or _stem(lowered) in haystack_terms or lowered in abbreviations:
            continue
        if any(_contains_word(haystack, alias) for alias in METONYMS.get(lowered, ())):
            continue
        missing.append(word)
    return missing


def _contains_word(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


_YES_NO_QUESTION = re.compile(
    r"^(is|are|was|were|do|does|did|can|could|has|have|had|will|would|should|shall|may|might)\b",
    re.IGNORECASE,
)
_YES_NO_ANSWER = re.compile(r"^(yes|no)\b", re.IGNORECASE)


def adds_information(sentence: str, question: str) -> bool:
    """Does the sentence say something the question did not (not a mere echo of it)?"""
    if _YES_NO_QUESTION.match(question.strip()) and _YES_NO_ANSWER.match(sentence.strip()):
        return True
    new_terms = set(content_terms(sentence)) - set(content_terms(question))
    return bool(new_terms) or bool(numbers_in(sentence) - numbers_in(question))


def _relevance(similarity: float, question_terms: dict[str, float], terms: set[str]) -> float:
    """Embedding similarity blended with the IDF-weighted share of question words present."""
    total = sum(question_terms.values())
    found = sum(weight for term, weight in question_terms.items() if term in terms)
    return 0.6 * similarity + 0.4 * (found / total if total > 0 else 0.0)


_WANTS_NUMBER = re.compile(
    r"\b(how (many|much|often|long|old|far|large|big)|what (percentage|percent|share|proportion|"
    r"fraction|number|amount|year|date)|when\b|which year|in what year)",
    re.IGNORECASE,
)
_HAS_QUANTITY = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
    r"fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|billion|trillion|dozens?|half|"
    r"quarter|third|percent|january|february|march|april|may|june|july|august|september|"
    r"october|november|december|yesterday|today|tomorrow|week|month|year)s?\b",
    re.IGNORECASE,
)
WRONG_TYPE_PENALTY = 0.5
HEADING_PENALTY = 0.5
# Refuse before calling the LLM when even the best sentence is this far below MIN_EXTRACTIVE.
EARLY_REFUSAL_RATIO = 0.8
LIST_ITEM = re.compile(r"^\s*([-*•+]|\d+[.)]|[a-z][.)]|\|)\s*")
MAX_LIST_CHARS = 600


def _list_end(text: str, spans: list[tuple[int, int]], index: int) -> int:
    """Index of the last span of the list a lead-in ("…these rates:") introduces, else index."""
    a, b = spans[index]
    if not text[a:b].rstrip().endswith(":"):
        return index
    last = index
    while (
        last + 1 < len(spans)
        and LIST_ITEM.match(text[spans[last + 1][0] : spans[last + 1][1]])
        and spans[last + 1][1] - a <= MAX_LIST_CHARS
    ):
        last += 1
    return last


def _is_heading(sentence: str) -> bool:
    """A title, heading or label rather than a statement."""
    stripped = sentence.strip().lstrip("#").strip()
    if "|" in stripped or LIST_ITEM.match(stripped):
        return False
    return (
        len(stripped.split()) <= 6
        and stripped[-1:] not in ".!?…"
        and not any(char.isdigit() for char in stripped)
    )


def answer_type_factor(question: str, sentence: str) -> float:
    """1.0, or a penalty when the question asks for a quantity or date the sentence lacks."""
    if not _WANTS_NUMBER.search(question):
        return 1.0
    if not _HAS_QUANTITY.search(sentence):
        return WRONG_TYPE_PENALTY
    return 1.0


_LEAD_IN = re.compile(r"^[^:]{3,80}:\s+(?=\S)")


def _drop_lead_in(sentence: str) -> str:
    """'The answer is: X' → 'X' (small models wrap quotes in such lead-ins)."""
    match = _LEAD_IN.match(sentence)
    if match and not _NUMBER.search(match.group(0)):
        rest = sentence[match.end() :]
        if len(_WORD.findall(rest)) >= 3:
            return rest
    return sentence


def new_words(sentence: str, support: Support, chunks: list[RetrievedChunk]) -> set[str]:
    """Content words of an answer sentence that its supporting span does not contain. A tiny
    model welds the question's words onto an unrelated fact ("… engines to Russia's space
    programme"); lexical overlap and embeddings both score such a sentence high."""
    chunk = chunks[support.chunk_index]
    span = chunk.text[support.start - chunk.start : support.end - chunk.start]
    return set(content_terms(sentence)) - set(content_terms(span))


def _choose_support(
    row: list[tuple[float, int, int]], markers: list[int], chunks: list[RetrievedChunk]
) -> Support | None:
    """The best-supporting chunk; the one the model cited wins when it is nearly as good."""
    if not row:
        return None
    best_index = max(range(len(row)), key=lambda i: row[i][0])
    for n in markers:
        i = n - 1
        if 0 <= i < len(row) and row[i][0] >= row[best_index][0] - 0.05:
            best_index = i
            break
    score, a, b = row[best_index]
    chunk = chunks[best_index]
    return Support(best_index, chunk.start + a, chunk.start + b, score)


def _compose(
    kept: list[tuple[str, Support]], chunks: list[RetrievedChunk]
) -> tuple[str, list[Citation]]:
    """Answer text with one [n] per sentence, and the citations those numbers point to."""
    numbers: dict[tuple[int, int, int], int] = {}
    citations: list[Citation] = []
    parts: list[str] = []
    for text, support in kept:
        key = (support.chunk_index, support.start, support.end)
        if key not in numbers:
            chunk = chunks[support.chunk_index]
            numbers[key] = len(numbers) + 1
            local_start = support.start - chunk.start
            local_end = support.end - chunk.start
            citations.append(
                Citation(
                    n=numbers[key],
                    source=chunk.source,
                    chunk_id=chunk.chunk_id,
                    page=chunk.page,
                    start=support.start,
                    end=support.end,
                    quote=chunk.text[local_start:local_end],
                    chunk_start=chunk.start,
                    chunk_index=int(chunk.metadata.get("chunk_index", 0)),
                    chunk_text=chunk.text,
                    title=chunk.title,
                )
            )
        # Line breaks of the source (wrapped PDF lines, list items) read as spaces in an answer;
        # the citation keeps the exact quote.
        sentence = " ".join(text.split())
        if sentence and sentence[-1] not in ".!?…\"'”’;:":
            sentence += "."
        # A quote of several sentences (a lead-in and its list) cites after each of them.
        spans = sentence_spans(sentence) or [(0, len(sentence))]
        parts.append(" ".join(f"{sentence[a:b]} [{numbers[key]}]" for a, b in spans))
    return " ".join(parts), citations


def _retrieved_info(chunks: list[RetrievedChunk]) -> list[RetrievedInfo]:
    return [
        RetrievedInfo(
            chunk_id=chunk.chunk_id,
            source=chunk.source,
            score=round(float(chunk.score), 6),
            text=chunk.text,
            page=chunk.page,
            title=chunk.title,
            dense_score=chunk.dense_score,
        )
        for chunk in chunks
    ]


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
