"""Retrieval: dense (Chroma) + BM25 (bm25s), fused; exposed as a LangChain retriever.

The BM25 index (rag/bm25.py) is derived from the store's chunks and cached under
``index_dir/.rag/`` (rag/bm25_disk.py), keyed by the collection's revision (which every
ingest changes). When the revision changes, whichever process next needs the index brings it
up to date: it lists the store's chunk ids, reads only the chunks that are new, and masks the
ones that are gone (chunk ids hash the chunk's text, so an id still present is the same
chunk); a full rebuild happens only when the changes since the last one grow large
(rag.bm25.MERGE_FRACTION).

A search embeds the query, then runs the store's nearest-neighbour query on a worker thread
while the calling thread finds BM25's top-k (Chroma's Rust core releases the GIL, and most of
BM25's time is numpy's): side by side at a million chunks (300 SciFact queries, embedding
cached), p50 2.28 ms against 3.63 ms one after the other (p95 5.5 / 7.2 ms), at 100,000 chunks
1.49 against 2.25 ms, with identical results. (The other way round, BM25 on the worker, gained
only 19 %: Chroma's Python layer then waits for the GIL.)
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.bm25 import BM25Index, Records, Segment
from rag.bm25_disk import BM25Cache
from rag.chunking import search_text
from rag.config import Settings
from rag.embeddings import Embedder
from rag.sections import path_at, with_section
from rag.store import Store, embedder_for, open_store

__all__ = [
    "BM25Index",
    "HybridRetriever",
    "HybridSearcher",
    "RetrievalResult",
    "RetrievedChunk",
    "fuse",
]

REVISION_CHECK_SECONDS = 1.0


@dataclass
class RetrievedChunk:
    """A chunk returned for a query, with its scores (higher is better)."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", ""))

    @property
    def page(self) -> int | None:
        page = self.metadata.get("page")
        return int(page) if page is not None else None

    @property
    def start(self) -> int:
        return int(self.metadata.get("start", 0))

    @property
    def table_header(self) -> str | None:
        """The header row of a table the chunk starts inside (rag.chunking.table_header)."""
        header = self.metadata.get("table_header")
        return str(header) if header else None

    @property
    def end(self) -> int:
        return int(self.metadata.get("end", self.start + len(self.text)))

    @property
    def section(self) -> str:
        """The heading path in effect where the chunk starts (rag.sections), or ""."""
        return str(self.metadata.get("section") or "")

    @property
    def sections(self) -> list[tuple[int, str]]:
        """(offset in the text, heading path from there on) of each heading line inside the
        chunk that changes the path (rag.sections), in order ([] when written by something
        else: read under the chunk's own section)."""
        return self._pairs("sections", int, str)

    @property
    def code(self) -> list[tuple[int, int]]:
        """(start, end) in the text of each code block (or part of one) the chunk holds
        (rag.codeblocks), in order ([] when written by something else: read as prose)."""
        return self._pairs("code", int, int)

    def _pairs(self, key: str, first: Callable[[Any], Any], second: Callable[[Any], Any]) -> list:
        """A metadata value stored as a JSON list of pairs, each pair converted; [] when absent
        or not such a list."""
        raw = self.metadata.get(key)
        if not raw:
            return []
        try:
            return [(first(a), second(b)) for a, b in json.loads(str(raw))]
        except (ValueError, TypeError):
            return []

    def section_at(self, offset: int) -> str:
        """The heading path in effect at ``offset`` of the chunk's text ("Refuelling"), or ""."""
        return path_at(self.sections, offset, self.section)

    def heading_at(self, offset: int) -> str:
        """The document title with the heading path in effect at ``offset`` of the chunk's
        text ("Fleet guide › Refuelling"): what a sentence there is read after."""
        return with_section(self.title, self.section_at(offset))

    @property
    def search_text(self) -> str:
        """The text that was embedded and keyword-indexed (title and section + chunk)."""
        return search_text(self.title, self.text, self.section)

    def to_document(self) -> Document:
        metadata = dict(self.metadata)
        metadata.update(
            chunk_id=self.chunk_id,
            score=self.score,
            dense_score=self.dense_score,
            bm25_score=self.bm25_score,
        )
        return Document(id=self.chunk_id, page_content=self.text, metadata=metadata)

    @classmethod
    def from_document(cls, document: Document) -> RetrievedChunk:
        """The chunk a Document stands for (ours, or any retriever's: the score keys are
        optional, and ``source``/``start``/``title`` are read from the metadata when present)."""
        metadata = dict(document.metadata)
        scores = {key: metadata.pop(key, None) for key in _SCORE_KEYS}
        chunk_id = str(metadata.pop("chunk_id", None) or document.id or hash(document.page_content))
        return cls(
            chunk_id=chunk_id,
            text=document.page_content,
            metadata=metadata,
            score=float(scores["score"] or 0.0),
            dense_score=_optional_float(scores["dense_score"]),
            bm25_score=_optional_float(scores["bm25_score"]),
        )


_SCORE_KEYS = ("score", "dense_score", "bm25_score", "query_best_dense")


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class RetrievalResult:
    """Ranked chunks plus the relevance signals used to decide whether to answer at all."""

    query: str
    chunks: list[RetrievedChunk]
    best_dense: float
    best_bm25: float
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def fuse(
    dense: dict[str, float],
    bm25: dict[str, float],
    method: str,
    dense_weight: float,
    bm25_weight: float,
    rrf_k: int = 60,
    bm25_bound: float | None = None,
) -> dict[str, float]:
    """Fused score per candidate id from cosine similarities and BM25 scores (higher is better).

    ``weighted`` (default): ``dense_weight * cosine + bm25_weight * bm25 / bound`` over the
    union of both candidate lists, where ``bound`` is the score of a chunk matching every query
    word at its best (``bm25_bound``; the best candidate's score when not given). The cosine is
    used raw: its absolute level says how close a chunk is, which min-max or rank normalisation
    throws away; the bound keeps a chunk that matches one common word of the question from
    counting as a perfect keyword match. ``dense`` should hold the cosine of every candidate
    (BM25-only ones included); a candidate without one gets the lowest known.
    ``rrf``: weighted reciprocal rank fusion.

    Tuned on the BEIR SciFact train split (see BENCHMARKS.md): weighted fusion with BM25
    k1=0.9, b=0.4 beats RRF by ~0.03 and min-max fusion by ~0.015 nDCG@10.
    """
    fused: dict[str, float] = {}
    if method == "rrf":
        for weight, ranking in ((dense_weight, dense), (bm25_weight, bm25)):
            ordered = sorted(ranking, key=ranking.__getitem__, reverse=True)
            for rank, chunk_id in enumerate(ordered):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (rrf_k + rank + 1)
        return fused
    floor = min(dense.values(), default=0.0)
    top = bm25_bound if bm25_bound else max(bm25.values(), default=0.0)
    for chunk_id in dense.keys() | bm25.keys():
        keyword = bm25.get(chunk_id, 0.0) / top if top > 0 else 0.0
        fused[chunk_id] = dense_weight * dense.get(chunk_id, floor) + bm25_weight * keyword
    return fused


_STORE_THREADS = 2  # store queries running at once for concurrent searches
_store_pool: ThreadPoolExecutor | None = None
_store_pool_lock = threading.Lock()


def store_pool() -> ThreadPoolExecutor:
    """The threads a search's store (dense) query runs on while the calling thread finds BM25's
    top-k: a search takes about the longer of the two, not their sum (module docstring)."""
    global _store_pool
    with _store_pool_lock:
        if _store_pool is None:
            _store_pool = ThreadPoolExecutor(_STORE_THREADS, thread_name_prefix="rag-store")
        return _store_pool


class HybridSearcher:
    """Dense + BM25 search over one collection; thread-safe, caches refreshed by revision."""

    def __init__(
        self, settings: Settings, embedder: Embedder | None = None, store: Store | None = None
    ):
        self.settings = settings
        self.embedder = embedder or embedder_for(settings)
        self.store = store or open_store(settings, self.embedder)
        self._bm25: BM25Index | None = None
        self._revision: str | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    @property
    def cache_dir(self) -> Path:
        return self.settings.state_dir / f"bm25-{self.settings.collection}"

    def chunk_count(self) -> int:
        """How many chunks the collection holds."""
        return self.store.count()

    def is_empty(self) -> bool:
        """Does the collection hold no chunks at all?"""
        return self.chunk_count() == 0

    def invalidate(self) -> None:
        """Force a revision check on the next search (after an in-process ingest)."""
        self._checked_at = 0.0

    def bm25(self) -> BM25Index:
        """The BM25 index for the collection's current revision (loaded, updated or built)."""
        now = time.monotonic()
        if self._bm25 is not None and now - self._checked_at < REVISION_CHECK_SECONDS:
            return self._bm25
        with self._lock:
            revision = self.store.revision()
            self._checked_at = time.monotonic()
            if self._bm25 is not None and revision == self._revision:
                return self._bm25
            cache = BM25Cache(self.cache_dir)
            index, cached_revision = self._bm25, self._revision
            if index is None:
                index, cached_revision = cache.load() or (None, None)
            if index is None or cached_revision != revision:
                index = self._brought_up_to_date(index)
                # A read-only index folder: keep the index in memory only.
                with contextlib.suppress(OSError):
                    cache.save(index, revision)
            self._bm25, self._revision = index, revision
            return index

    def _brought_up_to_date(self, index: BM25Index | None) -> BM25Index:
        """``index`` updated to the store's current chunks, or a fresh build when there is
        none or the changes are too many for an update."""
        current: list[str] | None = None
        if index is not None:
            current = self.store.ids()
            live = index.records.live_ids()
            added = [chunk_id for chunk_id in current if chunk_id not in live]
            removed = live - set(current)
            if not added and not removed:
                return index
            updated = index.updated(self._read_records(added), removed)
            if updated is not None:
                return updated
        return BM25Index.build(self._read_records(current))  # the ids listed once

    def _read_records(self, ids: Sequence[str] | None = None) -> Segment:
        """Every chunk of the collection (or those with the given ids), with vectors. Read by
        id, page by page: pages by offset make the store scan past every earlier page (at
        500k chunks, 224 s of reading instead of 84 s)."""
        parts: list[Segment] = []
        include = ("documents", "metadatas", "embeddings")
        ids = self.store.ids() if ids is None else ids
        for page_ids, fields in self.store.iter_records(include, ids=ids):
            parts.append(
                Segment(
                    list(page_ids),
                    [text or "" for text in fields["documents"]],
                    [meta or {} for meta in fields["metadatas"]],
                    np.asarray(fields["embeddings"], dtype=np.float16),
                )
            )
        return Segment.concat(parts) if parts else Segment([], [], [], None)

    def search(
        self,
        query: str,
        k: int | None = None,
        sources: list[str] | None = None,
        mode: Literal["hybrid", "dense", "bm25"] = "hybrid",
        fetch_k: int | None = None,
    ) -> RetrievalResult:
        """The k best chunks for ``query`` (optionally only from the given sources).

        ``mode`` "dense" or "bm25" ranks by one retriever alone (for evaluation)."""
        started = time.perf_counter()
        settings = self.settings
        k = k or settings.k
        fetch_k = max(fetch_k or settings.fetch_k, k)
        index = self.bm25()
        records = index.records
        where = {"source": {"$in": list(sources)}} if sources else None
        mask = np.isin(records.sources, list(sources)) if sources else None
        vector = self.embedder.encode_query(query)
        embedded = time.perf_counter()
        nearest = store_pool().submit(self.store.query, vector, fetch_k, where)
        try:
            top, bm25_scores, bm25_bound, _ = index.top(query, fetch_k, mask)
        finally:
            dense = dict(nearest.result())
        bm25 = {records.ids[i]: float(s) for i, s in zip(top.tolist(), bm25_scores, strict=True)}
        cosines = dict(dense)
        extra = [i for i in top if records.ids[i] not in dense] if mode == "hybrid" else []
        stored = records.vectors_at(extra)
        if stored is not None:
            exact = stored.astype(np.float32) @ vector
            cosines.update((records.ids[i], float(c)) for i, c in zip(extra, exact, strict=True))
        if mode == "dense":
            fused = dict(dense)
        elif mode == "bm25":
            fused = dict(bm25)
        else:
            fused = fuse(
                cosines, bm25, settings.fusion, settings.dense_weight, settings.bm25_weight,
                settings.rrf_k, bm25_bound,
            )  # fmt: skip
        ranked = sorted(fused, key=fused.__getitem__, reverse=True)[:k]
        chunks = self._hydrate(ranked, fused, cosines, bm25)
        return RetrievalResult(
            query=query,
            chunks=chunks,
            best_dense=max(dense.values(), default=0.0),
            best_bm25=max(bm25.values(), default=0.0),
            seconds=time.perf_counter() - started,
            details={"embed_s": embedded - started, "candidates": len(fused)},
        )

    def _hydrate(
        self,
        ranked: list[str],
        fused: dict[str, float],
        dense: dict[str, float],
        bm25: dict[str, float],
    ) -> list[RetrievedChunk]:
        records: Records | None = self._bm25.records if self._bm25 is not None else None
        position = {
            chunk_id: records.index_of(chunk_id) if records is not None else None
            for chunk_id in ranked
        }
        missing = [chunk_id for chunk_id, i in position.items() if i is None]
        fetched = self.store.get(missing) if missing else {}
        chunks: list[RetrievedChunk] = []
        for chunk_id in ranked:
            i = position[chunk_id]
            if records is not None and i is not None:
                text, metadata = records.texts[i], records.metadatas[i]
            elif chunk_id in fetched:
                text, metadata = fetched[chunk_id]
            else:
                continue  # deleted since the search began
            chunks.append(
                RetrievedChunk(
                    chunk_id=chunk_id,
                    text=text,
                    metadata=metadata,
                    score=fused[chunk_id],
                    dense_score=dense.get(chunk_id),
                    bm25_score=bm25.get(chunk_id),
                )
            )
        return chunks


class HybridRetriever(BaseRetriever):
    """LangChain retriever over :class:`HybridSearcher`. Documents carry ``chunk_id``, ``source``,
    ``page``, ``title``, ``chunk_index``, ``start``/``end`` offsets and the scores (``score``,
    ``dense_score``, ``bm25_score``, and ``query_best_dense``) in their metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: HybridSearcher
    k: int | None = None
    sources: list[str] | None = None

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        sources: list[str] | None = None,
    ) -> list[Document]:
        """Hybrid search; ``k`` and ``sources`` given to ``invoke`` override the fields."""
        result = self.searcher.search(
            query,
            k=k if k is not None else self.k,
            sources=sources if sources is not None else self.sources,
        )
        documents = [chunk.to_document() for chunk in result.chunks]
        for document in documents:
            # The best dense similarity over the whole collection, which the answer gate reads.
            document.metadata["query_best_dense"] = result.best_dense
        return documents
