"""BM25 keyword search over a collection's chunks, kept current incrementally.

The index is a *base* segment (bm25s over every chunk when it was built) plus a *delta* (chunks
added since, scored with the same formula) and a deletion mask, so a change to a million-chunk
collection costs work in proportion to the change, not to the collection.

Scores use the live collection's statistics: the number of chunks and each term's document
frequency (deleted chunks subtracted, added ones counted), so IDF is exact after any change,
and so is the per-term best score that fusion normalises by. The one statistic frozen when the
base was built is the average chunk length (avgdl), with which every chunk, base or delta, is
scored. A from-scratch build would use the current average; since BM25's length-normalised tf
part changes with ln(avgdl) at a rate between 0 and 1, each chunk's score then differs by a
relative error of at most |ln(avgdl_now / avgdl_base)|, and the index is rebuilt from scratch
(merged) when that drift passes ``MAX_AVGDL_DRIFT`` or the changes since the base pass
``MERGE_FRACTION`` of it.

This module owns the in-memory side: the segments (``Segment``, ``Base``, ``Delta``), the
combined view of their records (``Records``), updating (``BM25Index.updated``) and scoring.
Saving, loading and recovering the on-disk copy is ``rag.bm25_disk``'s; it imports this
module, never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from rag.bm25_top import QueryTerm, Row, pruned_top, rows_sorted, top_k
from rag.chunking import search_text
from rag.terms import bm25_tokenizer, terms

# Anserini's usual BM25 setting; on SciFact train it beat 1.2/0.75 inside the hybrid.
K1 = 0.9
B = 0.4
MERGE_FRACTION = 0.1
MAX_AVGDL_DRIFT = 0.005


def lucene_idf(df: np.ndarray, n: int) -> np.ndarray:
    """Lucene's IDF, log(1 + (n - df + 0.5) / (df + 0.5)), per term."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)


def tf_part(tf: np.ndarray, length: np.ndarray, avgdl: float) -> np.ndarray:
    """BM25's length-normalised term-frequency part (bm25s's Lucene/Robertson form)."""
    return (tf / (K1 * ((1 - B) + B * length / avgdl) + tf)).astype(np.float32)


class Segment:
    """Chunk ids, texts, metadata and float16 vectors, in one order."""

    def __init__(
        self,
        ids: list[str],
        texts: list[str],
        metadatas: list[dict[str, Any]],
        vectors: np.ndarray | None = None,
    ):
        self.ids = ids
        self.texts = texts
        self.metadatas = metadatas
        self.vectors = vectors
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}
        self.sources = np.array([str(m.get("source", "")) for m in metadatas], dtype=object)

    def __len__(self) -> int:
        return len(self.ids)

    def search_texts(self) -> list[str]:
        return [
            search_text(str(meta.get("title", "")), text, str(meta.get("section", "")))
            for text, meta in zip(self.texts, self.metadatas, strict=True)
        ]

    def search_text_at(self, i: int) -> str:
        meta = self.metadatas[i]
        return search_text(str(meta.get("title", "")), self.texts[i], str(meta.get("section", "")))

    @classmethod
    def concat(cls, parts: Sequence[Segment]) -> Segment:
        vectors = [p.vectors for p in parts if len(p)]
        return cls(
            [i for p in parts for i in p.ids],
            [t for p in parts for t in p.texts],
            [m for p in parts for m in p.metadatas],
            None if any(v is None for v in vectors) else _stack(vectors),
        )


def _stack(vectors: list[np.ndarray | None]) -> np.ndarray | None:
    arrays = [v for v in vectors if v is not None]
    return np.concatenate(arrays) if arrays else None


class Records:
    """Every chunk of an index, base then delta, and which of them are live."""

    def __init__(self, base: Segment, delta: Segment, alive: np.ndarray):
        self._parts = (base, delta)
        self.ids = base.ids + delta.ids
        self.texts = base.texts + delta.texts
        self.metadatas = base.metadatas + delta.metadatas
        self.sources = np.concatenate([base.sources, delta.sources])
        self.alive = alive

    def index_of(self, chunk_id: str) -> int | None:
        """The position of a live chunk, or None."""
        base, delta = self._parts
        i = base.position.get(chunk_id)
        if i is not None and self.alive[i]:
            return i
        j = delta.position.get(chunk_id)
        return len(base) + j if j is not None and self.alive[len(base) + j] else None

    def live_ids(self) -> set[str]:
        return {self.ids[i] for i in np.flatnonzero(self.alive)}

    def vectors_at(self, rows: Sequence[int]) -> np.ndarray | None:
        """Float16 vectors of the chunks at ``rows`` (None when the index keeps none)."""
        base, delta = self._parts
        if (len(base) and base.vectors is None) or (len(delta) and delta.vectors is None):
            return None
        n = len(base)
        out = [
            base.vectors[i] if i < n else delta.vectors[i - n]  # type: ignore[index]
            for i in rows
        ]
        return np.asarray(out) if out else None


@dataclass
class Base:
    """A bm25s index over a segment; postings hold idf(base) * tf part(avgdl of the base)."""

    records: Segment
    retriever: Any
    lengths: np.ndarray
    folder: str | None = None  # its folder in the on-disk cache (rag.bm25_disk), once saved
    _term_max: np.ndarray | None = field(default=None, repr=False)
    _sorted: bool | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.retriever is None:
            self.vocab: dict[str, int] = {}
            self.data = np.zeros(0, dtype=np.float32)
            self.indices = np.zeros(0, dtype=np.int32)
            self.indptr = np.zeros(1, dtype=np.int64)
        else:
            self.vocab = dict(self.retriever.vocab_dict)
            scores = self.retriever.scores
            self.data, self.indices, self.indptr = (
                scores["data"],
                scores["indices"],
                scores["indptr"],
            )
        self.df = np.diff(np.asarray(self.indptr)).astype(np.int64)
        n = len(self.records)
        self.avgdl = float(self.lengths.mean()) if n else 1.0
        self.idf = lucene_idf(self.df, n)

    @property
    def vocab_size(self) -> int:
        return len(self.indptr) - 1

    def term_max(self, alive: np.ndarray | None = None) -> np.ndarray:
        """Per term, its highest posting (over live chunks when ``alive`` is given)."""
        if alive is None and self._term_max is not None:
            return self._term_max
        data = np.asarray(self.data, dtype=np.float32)
        if alive is not None:
            data = np.where(alive[self.indices], data, 0.0)
        maxima = _segment_max(data, np.asarray(self.indptr))
        if alive is None:
            self._term_max = maxima
        return maxima

    def postings_sorted(self) -> bool:
        """Are each term's postings in chunk order (bm25s's CSC builders sort them)? Checked
        once, which pruned top-k search relies on."""
        if self._sorted is None:
            self._sorted = rows_sorted(np.asarray(self.indices), np.asarray(self.indptr))
        return self._sorted

    @classmethod
    def build(cls, records: Segment) -> Base:
        import bm25s

        if not len(records):
            return cls(records, None, np.zeros(0, dtype=np.int32))
        tokenizer = bm25_tokenizer()
        tokens = tokenizer.tokenize(records.search_texts(), return_as="tuple", show_progress=False)
        lengths = np.fromiter((len(ids) for ids in tokens.ids), dtype=np.int32, count=len(records))
        retriever = bm25s.BM25(method="lucene", k1=K1, b=B)
        retriever.index(tokens, show_progress=False)
        return cls(records, retriever, lengths)


def _segment_max(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Per CSR row, its largest value (0 for empty rows)."""
    maxima = np.zeros(len(indptr) - 1, dtype=np.float32)
    nonempty = np.diff(indptr) > 0
    if data.size:
        maxima[nonempty] = np.maximum.reduceat(data, indptr[:-1][nonempty])
    return maxima


@dataclass
class Delta:
    """What changed since the base: added chunks (their postings as raw term frequencies),
    deleted chunks of the base and of the delta, and terms the base never saw."""

    records: Segment
    doc: np.ndarray  # per posting: the delta chunk
    term: np.ndarray  # per posting: the term id (base vocabulary, then new_terms)
    tf: np.ndarray  # per posting: term frequency
    lengths: np.ndarray  # per delta chunk: its number of terms
    alive: np.ndarray  # per delta chunk
    base_alive: np.ndarray  # per base chunk
    removed_df: np.ndarray  # per base term: deleted base chunks containing it
    new_terms: list[str]
    folder: str | None = None  # its folder in the on-disk cache (rag.bm25_disk), once saved

    @classmethod
    def empty(cls, base: Base) -> Delta:
        return cls(
            Segment([], [], [], None),
            np.zeros(0, dtype=np.int32),
            np.zeros(0, dtype=np.int32),
            np.zeros(0, dtype=np.float32),
            np.zeros(0, dtype=np.int32),
            np.zeros(0, dtype=bool),
            np.ones(len(base.records), dtype=bool),
            np.zeros(base.vocab_size, dtype=np.int32),
            [],
        )


class TopK(NamedTuple):
    """The k best chunks for a query: positions and scores, best first (ties by position); the
    fusion bound of ``BM25Index.scores``; whether pruning found them (else every chunk was
    scored)."""

    indices: np.ndarray
    scores: np.ndarray
    bound: float
    pruned: bool


class BM25Index:
    """Base + delta, scored with the live collection's statistics (see the module docstring)."""

    def __init__(self, base: Base, delta: Delta | None = None):
        self.base = base
        self.delta = delta = delta if delta is not None else Delta.empty(base)
        nb = base.vocab_size
        self.vocab = dict(base.vocab)
        self.vocab.update((stem, nb + i) for i, stem in enumerate(delta.new_terms))
        size = nb + len(delta.new_terms)
        live_postings = delta.alive[delta.doc] if delta.doc.size else np.zeros(0, dtype=bool)
        self.df = np.zeros(size, dtype=np.int64)
        self.df[:nb] = base.df - delta.removed_df
        self.df += np.bincount(delta.term[live_postings], minlength=size)[:size]
        self.n = int(delta.base_alive.sum() + delta.alive.sum())
        self.idf_all = lucene_idf(self.df, self.n)
        self.base_weight = self.idf_all[:nb] / np.maximum(base.idf, 1e-12)
        order = np.argsort(delta.term, kind="stable")
        self.delta_indptr = np.searchsorted(delta.term[order], np.arange(size + 1)).astype(np.int64)
        self.delta_indices = delta.doc[order]
        self.delta_data = tf_part(delta.tf[order], delta.lengths[delta.doc[order]], base.avgdl)
        self.alive = np.concatenate([delta.base_alive, delta.alive])
        self.dead = np.flatnonzero(~self.alive)  # zeroed in every score array
        self.records = Records(base.records, delta.records, self.alive)
        self._term_max: np.ndarray | None = None
        self._sorted: bool | None = None

    # Building and updating ---------------------------------------------------------------

    @classmethod
    def build(cls, records: Segment) -> BM25Index:
        """A fresh index (one base segment) over ``records``."""
        return cls(Base.build(records))

    @property
    def changed(self) -> int:
        """Chunks added or deleted since the base was built."""
        return int(len(self.delta.records) + (~self.delta.base_alive).sum())

    def avgdl_drift(self) -> float:
        """|ln(avgdl of the live chunks / avgdl the scores use)|."""
        if not self.n:
            return 0.0
        total = self.base.lengths[self.delta.base_alive].sum()
        total += self.delta.lengths[self.delta.alive].sum()
        return abs(float(np.log(max(total / self.n, 1e-9) / self.base.avgdl)))

    def updated(self, added: Segment, removed: Iterable[str]) -> BM25Index | None:
        """This index with ``removed`` chunk ids deleted and ``added`` appended (ids already
        live are replaced); None when the change is big enough that a rebuild is due."""
        base, delta = self.base, self.delta
        removed = set(removed) | {i for i in added.ids if self.records.index_of(i) is not None}
        nb = len(base.records)
        base_alive = delta.base_alive.copy()
        alive = delta.alive.copy()
        removed_df = delta.removed_df.copy()
        gone_from_base: list[int] = []
        for chunk_id in removed:
            i = self.records.index_of(chunk_id)
            if i is None:
                continue
            if i < nb:
                base_alive[i] = False
                gone_from_base.append(i)
            else:
                alive[i - nb] = False
        if len(delta.records) + len(added) + (~base_alive).sum() > MERGE_FRACTION * max(nb, 1):
            return None
        for i in gone_from_base:
            term_ids = {base.vocab.get(stem) for stem in terms(base.records.search_text_at(i))}
            term_ids.discard(None)
            removed_df[list(term_ids)] += 1  # type: ignore[index]
        vocab = dict(self.vocab)
        new_terms = list(delta.new_terms)
        docs, term_ids, tfs, lengths = [], [], [], []
        for offset, text in enumerate(added.search_texts()):
            stems = terms(text)
            for stem in stems:
                if stem not in vocab:
                    vocab[stem] = base.vocab_size + len(new_terms)
                    new_terms.append(stem)
            unique, counts = np.unique(
                np.fromiter((vocab[s] for s in stems), dtype=np.int32, count=len(stems)),
                return_counts=True,
            )
            docs.append(np.full(len(unique), len(delta.records) + offset, dtype=np.int32))
            term_ids.append(unique.astype(np.int32))
            tfs.append(counts.astype(np.float32))
            lengths.append(len(stems))
        merged = Delta(
            Segment.concat([delta.records, added]),
            np.concatenate([delta.doc, *docs]).astype(np.int32),
            np.concatenate([delta.term, *term_ids]).astype(np.int32),
            np.concatenate([delta.tf, *tfs]).astype(np.float32),
            np.concatenate([delta.lengths, np.asarray(lengths, dtype=np.int32)]),
            np.concatenate([alive, np.ones(len(added), dtype=bool)]),
            base_alive,
            removed_df,
            new_terms,
        )
        index = BM25Index(base, merged)
        return None if index.avgdl_drift() > MAX_AVGDL_DRIFT else index

    # Scoring -----------------------------------------------------------------------------

    def term_max(self) -> np.ndarray:
        """Per term, the highest score it gives any live chunk (computed once per index)."""
        if self._term_max is None:
            base, delta = self.base, self.delta
            alive = None if delta.base_alive.all() else delta.base_alive
            maxima = np.zeros(len(self.idf_all), dtype=np.float32)
            maxima[: base.vocab_size] = base.term_max(alive) * self.base_weight
            if self.delta_data.size:
                live = np.where(delta.alive[self.delta_indices], self.delta_data, 0.0)
                maxima = np.maximum(maxima, _segment_max(live, self.delta_indptr) * self.idf_all)
            self._term_max = maxima
        return self._term_max

    def idf(self, stems: Iterable[str]) -> dict[str, float]:
        """Lucene IDF of stemmed terms over the live chunks (unseen terms get the highest)."""
        if not self.n:
            return {}
        out: dict[str, float] = {}
        for stem in stems:
            sid = self.vocab.get(stem)
            df = int(self.df[sid]) if sid is not None else 0
            out[stem] = float(np.log(1.0 + (self.n - df + 0.5) / (df + 0.5)))
        return out

    def _query_ids(self, query: str) -> tuple[list[int], int]:
        """Term ids of the query's words that some live chunk has, and how many it has not."""
        stems = terms(query)
        ids = [self.vocab[s] for s in stems if s in self.vocab and self.df[self.vocab[s]] > 0]
        return ids, len(stems) - len(ids)

    def _bound(self, ids: list[int], unseen: int) -> float:
        term_max = self.term_max()
        return float(term_max[ids].sum()) + unseen * float(term_max.max(initial=0.0))

    def top(self, query: str, k: int, mask: np.ndarray | None = None) -> TopK:
        """The k best chunks for ``query`` (only where ``mask`` is true, when given): exactly
        ``top_k(self.scores(query)[0], k, mask)``, found by MaxScore pruning (rag.bm25_top)
        where it saves work."""
        empty = TopK(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), 0.0, False)
        ids, unseen = self._query_ids(query) if self.n else ([], 0)
        if not ids:
            return empty
        bound = self._bound(ids, unseen)
        if self.postings_sorted():
            query_terms, order = self._query_terms(ids)
            keep = [m for m in (self.alive if self.dead.size else None, mask) if m is not None]
            found = pruned_top(query_terms, order, k, len(self.alive), keep)
            if found is not None:
                return TopK(found[0], found[1], bound, True)
        scores = self._scores_of(ids)
        chosen = top_k(scores, k, mask)
        return TopK(chosen, scores[chosen], bound, False)

    def postings_sorted(self) -> bool:
        """Are every term's postings, in the base and in the delta, in chunk order?"""
        if self._sorted is None:
            delta = rows_sorted(self.delta_indices, self.delta_indptr)
            self._sorted = delta and self.base.postings_sorted()
        return self._sorted

    def _query_terms(self, ids: list[int]) -> tuple[list[QueryTerm], list[int]]:
        """The query's distinct terms (their postings in each segment, bounds, repeats) and,
        per occurrence of a term in the query, its index among them."""
        base = self.base
        segments = (
            (base.indices, base.data, base.indptr, self.base_weight, 0),
            (
                self.delta_indices,
                self.delta_data,
                self.delta_indptr,
                self.idf_all,
                len(base.records),
            ),
        )
        distinct = list(dict.fromkeys(ids))
        term_max = self.term_max()
        query_terms = []
        for t in distinct:
            rows = []
            for indices, data, indptr, weights, offset in segments:
                if t < len(indptr) - 1 and indptr[t + 1] > indptr[t]:
                    a, b = int(indptr[t]), int(indptr[t + 1])
                    rows.append(Row(indices[a:b], data[a:b], float(weights[t]), offset))
            query_terms.append(QueryTerm(tuple(rows), ids.count(t), float(term_max[t])))
        position = {t: i for i, t in enumerate(distinct)}
        return query_terms, [position[t] for t in ids]

    def scores(self, query: str) -> tuple[np.ndarray, float]:
        """BM25 score of every chunk (0 for deleted ones) for ``query``, and the score a chunk
        matching every query word at its best would get (the normaliser of fusion; words no
        chunk has count at the highest per-term score, so matching one word of a long query
        stays a weak match)."""
        total = len(self.alive)
        if not self.n:
            return np.zeros(total, dtype=np.float32), 0.0
        ids, unseen = self._query_ids(query)
        if not ids:
            return np.zeros(total, dtype=np.float32), 0.0
        return self._scores_of(ids), self._bound(ids, unseen)

    def _scores_of(self, ids: list[int]) -> np.ndarray:
        """Every chunk's score for the query's (present) term ids, 0 for deleted chunks."""
        total = len(self.alive)
        nb = self.base.vocab_size
        base_ids = [t for t in ids if t < nb]
        scores = np.zeros(total, dtype=np.float32)
        n_base = len(self.base.records)
        if base_ids:
            scores[:n_base] = _accumulate(
                self.base.data, self.base.indices, self.base.indptr, base_ids,
                self.base_weight, n_base,
            )  # fmt: skip
        if self.delta_data.size:
            scores[n_base:] = _accumulate(
                self.delta_data, self.delta_indices, self.delta_indptr, ids,
                self.idf_all, total - n_base,
            )  # fmt: skip
        if self.dead.size:
            scores[self.dead] = 0.0
        return scores


def _accumulate(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    term_ids: Sequence[int],
    weights: np.ndarray,
    n_docs: int,
) -> np.ndarray:
    """sum over the query's terms t of weights[t] * row t of a term-major CSR matrix."""
    spans = [(int(indptr[t]), int(indptr[t + 1]), float(weights[t])) for t in term_ids]
    spans = [s for s in spans if s[1] > s[0]]
    if not spans:
        return np.zeros(n_docs, dtype=np.float32)
    docs = np.concatenate([indices[a:b] for a, b, _ in spans])
    values = np.concatenate([data[a:b] * w for a, b, w in spans])
    return np.bincount(docs, weights=values, minlength=n_docs)  # float64: the caller casts
