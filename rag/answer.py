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
from rag.reader import READER_DIR, Reader, get_reader
from rag.retrieval import HybridSearcher, RetrievalResult, RetrievedChunk

# How strictly generated sentences must be supported by their source span (share of content
# words and embedding similarity, rag.answer.Verifier.support). The reader's own thresholds
# (when the documents answer at all, when a second sentence is quoted) are calibrated on
# held-out validation articles and stored with the model: rag/models/reader/reader.json.
MIN_SUPPORT = 0.55
WEAK_MODEL_MIN_SUPPORT = 0.75
LOCAL_CONTEXT_CHARS = 600
REFUSAL_PREFIX = "The documents don't say"
MAX_EXTRACTIVE_SENTENCES = 2
# Sentences the reader scores per question (the best by embedding similarity to it).
MAX_READER_CANDIDATES = 24


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
    direct: str = Field("", exclude=True, description="The short answer the text leads with.")

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

    return frozenset(STOPWORDS_EN_PLUS)


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
        self, sentences: list[str], chunks: list[RetrievedChunk], single_only: bool = False
    ) -> list[list[tuple[float, int, int]]]:
        """For each sentence, per chunk: (support score, window start, window end) of the best
        window (offsets within the chunk). Support blends the share of the sentence's content
        words found in the window with embedding similarity; a number absent from the window
        zeroes it. ``single_only``: one source sentence must support it alone (no two-sentence
        windows, which let a small model weld a clause of one sentence onto another)."""
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
                    if single_only and w >= single:
                        break
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


@dataclass(frozen=True)
class Candidate:
    """A sentence of a retrieved chunk (a lead-in with the list it introduces), as the reader
    scored it for the question. Offsets are within the chunk's text."""

    score: float
    chunk_index: int
    start: int
    end: int
    answer_start: int  # the reader's short answer inside the sentence
    answer_end: int


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
        said_unknown = bool(_REFUSAL.search(draft)) and len(pieces) <= 2
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
            texts = [_drop_lead_in(text) for text, _ in pieces]
            table = self.verifier.support(texts, chunks, single_only=weak)
            supported: list[tuple[str, Support]] = []
            for text, (_, markers), row in zip(texts, pieces, table, strict=True):
                support = _choose_support(row, markers, chunks)
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
            retrieved=_retrieved_info(chunks),
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
        previous question ("… microelectronics …? And what about machine tools?") is read as
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
                last = _list_end(chunk.text, info.spans, s)
                b = info.spans[last][1]
                key = (chunk.source, chunk.start + a, chunk.start + b)
                if key in seen or not _WORD.search(chunk.text[a:b]):
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
            retrieved=_retrieved_info(chunks),
            llm=state.spec.label,
            timings=Timings(
                retrieve_s=round(state.retrieve_s, 4),
                total_s=round(time.perf_counter() - state.started, 4),
            ),
            mode="refused",
        )


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


MAX_LIST_CHARS = 600
LIST_ITEM = re.compile(r"^\s*([-*•+]|\d+[.)]|[a-z][.)]|\|)\s*")


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


DIRECT_MAX_SHARE = 0.6  # a short answer is led with only when it is this much shorter
DIRECT_MAX_WORDS = 10  # ... and a phrase, not a clause (SQuAD's answers are mostly 1-5 words)
_EDGE_PUNCTUATION = " \t\n,;:.()[]\"'“”‘’"


def direct_answer(best: Candidate, chunks: list[RetrievedChunk]) -> str:
    """The reader's short answer in the best sentence ("1990", "about 90%"), or "" when it is
    most of the sentence anyway, or the best candidate is a lead-in with its list."""
    text = chunks[best.chunk_index].text
    block = text[best.start : best.end]
    if len(sentence_spans(block)) > 1:
        return ""
    span = " ".join(text[best.answer_start : best.answer_end].split()).strip(_EDGE_PUNCTUATION)
    sentence = " ".join(block.split())
    too_long = len(span) > DIRECT_MAX_SHARE * len(sentence) or len(span.split()) > DIRECT_MAX_WORDS
    if not _WORD.search(span) or too_long:
        return ""
    return span


def compose_answer(
    kept: list[tuple[str, Support]], chunks: list[RetrievedChunk], direct: str = ""
) -> tuple[str, list[Citation]]:
    """Answer text with one [n] per sentence, and the citations those numbers point to. A
    direct answer found in the first kept sentence leads it: "1990 — The first … 1990 … [1]"."""
    numbers: dict[tuple[int, int, int], int] = {}
    citations: list[Citation] = []
    parts: list[str] = []
    for position, (text, support) in enumerate(kept):
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
        if position == 0 and direct and direct in sentence and not sentence.startswith(direct):
            sentence = f"{direct} — {sentence}"
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
