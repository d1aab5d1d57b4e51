"""Verification: which source span supports an answer sentence, and how well."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from rag import markers
from rag.answer.text import NUMBER, WORD, content_terms, numbers_in
from rag.chunking import sentence_spans
from rag.codeblocks import fenced_blocks, inside
from rag.embeddings import Embedder
from rag.retrieval import RetrievedChunk

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
    vectors: np.ndarray  # one per sentence (span)
    window_vectors: np.ndarray | None = None  # one per window; embedded when first needed


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
        spans = sentence_spans(chunk.text, code=chunk.code) or [(0, len(chunk.text))]
        windows = list(spans) + [(spans[i][0], spans[i + 1][1]) for i in range(len(spans) - 1)]
        texts = [chunk.text[a:b] for a, b in windows]
        entry = _ChunkSentences(
            spans=spans,
            windows=windows,
            terms=[set(content_terms(text)) for text in texts],
            numbers=[numbers_in(text) for text in texts],
            # Ranking needs the sentences' vectors only; the two-sentence windows (longer, and
            # about half the texts) are embedded when a generated sentence is first checked.
            vectors=self.embedder.encode(texts[: len(spans)]),
        )
        with self._lock:
            self._cache[chunk.chunk_id] = entry
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return entry

    def _window_vectors(self, info: _ChunkSentences, text: str) -> np.ndarray:
        """Every window's vector: the sentences', then the two-sentence windows' (embedded once
        per chunk, on first use; ``text`` is the chunk's)."""
        if info.window_vectors is None:
            pairs = [text[a:b] for a, b in info.windows[len(info.spans) :]]
            extra = self.embedder.encode(pairs) if pairs else info.vectors[:0]
            info.window_vectors = np.vstack([info.vectors, extra])
        return info.window_vectors

    def support(
        self,
        sentences: list[str],
        chunks: list[RetrievedChunk],
        single_only: bool = False,
        vectors: np.ndarray | None = None,
    ) -> list[list[tuple[float, int, int]]]:
        """For each sentence, per chunk: (support score, window start, window end) of the best
        window (offsets within the chunk). Support blends the share of the sentence's content
        words found in the window with embedding similarity; a number absent from the window
        zeroes it. ``single_only``: one source sentence must support it alone (no two-sentence
        windows, which let a small model weld a clause of one sentence onto another).
        ``vectors``: the sentences' embeddings, when the caller has them already."""
        if not sentences or not chunks:
            return [[] for _ in sentences]
        if vectors is None:
            vectors = self.embedder.encode(sentences)
        table: list[list[tuple[float, int, int]]] = []
        per_chunk = [self.chunk_sentences(chunk) for chunk in chunks]
        for sentence, vector in zip(sentences, vectors, strict=True):
            terms = set(content_terms(sentence))
            numbers = numbers_in(sentence)
            row: list[tuple[float, int, int]] = []
            for info, chunk in zip(per_chunk, chunks, strict=True):
                # One-sentence support reads the sentences' vectors only (windows come after).
                windows = info.vectors if single_only else self._window_vectors(info, chunk.text)
                similarities = windows @ vector
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


def _answer_spans(text: str) -> list[tuple[int, int]]:
    """Sentence spans of an answer, each fenced code block in it as one span."""
    blocks = fenced_blocks(text)
    spans: list[tuple[int, int]] = []
    for a, b in sentence_spans(text, code=blocks):
        block = inside(blocks, a)
        if block is None:
            spans.append((a, b))
        elif not spans or spans[-1] != block:
            spans.append(block)
    return spans


def split_answer(text: str) -> list[tuple[str, list[int]]]:
    """Answer sentences with the [n] markers each carried (markers removed from the text).

    A marker right after a sentence's final period ("First. [1] Second. [2]") belongs to the
    sentence before it; a fenced code block is one piece."""
    pieces: list[tuple[str, list[int]]] = []
    for a, b in _answer_spans(text):
        sentence = text[a:b]
        lead = markers.LEADING.match(sentence)
        if lead and pieces:
            pieces[-1][1].extend(markers.numbers(lead.group(0)))
            sentence = sentence[lead.end() :]
        cited = markers.numbers(sentence)
        clean = markers.strip(sentence).strip()
        if not WORD.search(clean):
            if pieces and cited:  # a marker that trailed the sentence end: "… sentence. [2]"
                pieces[-1][1].extend(cited)
            continue
        pieces.append((clean, cited))
    return pieces


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


def list_end(text: str, spans: list[tuple[int, int]], index: int) -> int:
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


def drop_lead_in(sentence: str) -> str:
    """'The answer is: X' → 'X' (small models wrap quotes in such lead-ins)."""
    match = _LEAD_IN.match(sentence)
    if match and not NUMBER.search(match.group(0)):
        rest = sentence[match.end() :]
        if len(WORD.findall(rest)) >= 3:
            return rest
    return sentence


def new_words(sentence: str, support: Support, chunks: list[RetrievedChunk]) -> set[str]:
    """Content words of an answer sentence that its supporting span does not contain. A tiny
    model welds the question's words onto an unrelated fact ("… engines to the country's space
    programme"); lexical overlap and embeddings both score such a sentence high."""
    chunk = chunks[support.chunk_index]
    span = chunk.text[support.start - chunk.start : support.end - chunk.start]
    return set(content_terms(sentence)) - set(content_terms(span))


def choose_support(
    row: list[tuple[float, int, int]], cited: list[int], chunks: list[RetrievedChunk]
) -> Support | None:
    """The best-supporting chunk; the one the model cited wins when it is nearly as good."""
    if not row:
        return None
    best_index = max(range(len(row)), key=lambda i: row[i][0])
    for n in cited:
        i = n - 1
        if 0 <= i < len(row) and row[i][0] >= row[best_index][0] - 0.05:
            best_index = i
            break
    score, a, b = row[best_index]
    chunk = chunks[best_index]
    return Support(best_index, chunk.start + a, chunk.start + b, score)
