"""A stand-in collection of any size built from SciFact: real text for BM25, stored vectors
for the dense side, written through the product's Store, resumably.

Chunks are windows of consecutive sentences of each abstract (every single sentence first, then
pairs, then triples, ...; at most ``MAX_CHARS``, the product's chunk size). Past the last
window, the windows repeat in *variation cycles*: cycle ``c`` appends to a window one sentence
of another abstract (chosen deterministically by ``c``), so the text stays real SciFact text
but no chunk repeats. SciFact has 688k windows of at most 1,000 characters, so 1M chunks use
one cycle.

Vectors are inserted precomputed (embedding a million chunks takes hours on 2 cores): each
chunk reuses the stored embedding of the SciFact chunk (~1000 characters of the same abstract)
that contains it, as indexed by the SciFact section, plus a small deterministic perturbation
so no two vectors are equal. Abstracts not embedded there (quick mode's subset) borrow another
abstract's vector.

The writer is resumable: chunk ids, per-file positions and each batch's noise are functions
of the chunk's place in the list, so a build interrupted halfway continues from the store's
count (upserts of a batch written twice are idempotent).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks.common import log, settings

MAX_CHARS = 1000
VARIANT_ROOM = 200  # a window gets a partner sentence in a cycle only if it leaves this much
PARTNER_STEP = 7919  # cycle c pairs abstract i with abstract i + c * PARTNER_STEP (mod n)
NOISE = 0.5  # perturbation norm relative to the unit vector: cosine to the source ~0.89
BATCH = 5000
SEED = 12345


class Window(NamedTuple):
    """One synthetic chunk: sentences ``first``.. of ``doc_id`` spanning [start, end) of its
    file text ('title\\n\\nabstract'); in cycle > 0 followed by one partner sentence."""

    doc_id: str
    start: int
    end: int
    width: int
    cycle: int = 0


def sentence_spans_by_doc(corpus: dict[str, tuple[str, str]]) -> dict[str, list[tuple[int, int]]]:
    """Each abstract's sentence offsets into its file text 'title\\n\\nabstract'."""
    from rag.chunking import sentence_spans

    spans: dict[str, list[tuple[int, int]]] = {}
    for doc_id, (title, text) in corpus.items():
        shift = len(title.strip()) + 2 if title.strip() else 0
        spans[doc_id] = [(shift + a, shift + b) for a, b in sentence_spans(text.strip())]
    return spans


def windows(
    corpus: dict[str, tuple[str, str]], n_chunks: int, max_chars: int = MAX_CHARS
) -> list[Window]:
    """``n_chunks`` windows: singles, pairs, triples, ... of at most ``max_chars``, then the
    variation cycles (see the module docstring)."""
    spans = sentence_spans_by_doc(corpus)
    base: list[Window] = []
    width = 1
    while len(base) < n_chunks:
        added = 0
        for doc_id, sentences in spans.items():
            for first in range(len(sentences) - width + 1):
                start, end = sentences[first][0], sentences[first + width - 1][1]
                if end - start > max_chars:
                    continue
                base.append(Window(doc_id, start, end, width))
                added += 1
                if len(base) >= n_chunks:
                    return base
        if added == 0:
            break
        width += 1
    out = list(base)
    cycle = 1
    roomy = [w for w in base if w.end - w.start <= max_chars - VARIANT_ROOM]
    while len(out) < n_chunks and roomy:
        for window in roomy:
            out.append(window._replace(cycle=cycle))
            if len(out) >= n_chunks:
                break
        cycle += 1
    return out


class Texts:
    """The text, file key and source of each window."""

    def __init__(self, corpus: dict[str, tuple[str, str]]):
        self.corpus = corpus
        self.spans = sentence_spans_by_doc(corpus)
        self.order = list(corpus)
        self.rank = {doc_id: i for i, doc_id in enumerate(self.order)}

    def file_text(self, doc_id: str) -> str:
        title, text = self.corpus[doc_id]
        return "\n\n".join(p.strip() for p in (title, text) if p.strip())

    def text(self, window: Window) -> str:
        piece = self.file_text(window.doc_id)[window.start : window.end]
        if window.cycle == 0:
            return piece
        partner = self.order[
            (self.rank[window.doc_id] + window.cycle * PARTNER_STEP) % len(self.order)
        ]
        sentences = self.spans[partner] or [(0, 0)]
        a, b = sentences[(window.start + window.cycle) % len(sentences)]
        return f"{piece} {self.file_text(partner)[a:b]}".strip()

    @staticmethod
    def key(window: Window) -> str:
        suffix = f"~{window.cycle}" if window.cycle else ""
        return f"/bench/scifact/{window.doc_id}{suffix}.txt"


def source_vectors(
    dataset_dir: Path, cache: Path
) -> tuple[dict[str, list[tuple[int, int, np.ndarray]]], str]:
    """{doc id: [(start, end, vector)]} from the SciFact evaluation index (built if missing)."""
    from benchmarks import scifact
    from rag.evaluation import beir_collection_name, doc_filename, load_beir
    from rag.store import Store

    workdir = cache / "scifact"
    base = settings(index_dir=workdir / "index", data_dir=workdir / "data", llm="extractive")
    dataset = load_beir(dataset_dir, "test")
    names = [beir_collection_name(dataset.name), f"beir-scifact-{scifact.QUICK_DOCS}"]
    best: tuple[int, str] | None = None
    for name in names:
        count = Store(base.with_overrides(collection=name), None, None).count()
        if count and (best is None or count > best[0]):
            best = (count, name)
    if best is None:
        log("synthetic: no SciFact index yet: building the subset one")
        scifact.run(quick=True, dataset_dir=dataset_dir, workdir=workdir)
        best = (0, names[1])
    store = Store(base.with_overrides(collection=best[1]), None, None)
    by_file = {doc_filename(doc_id): doc_id for doc_id in dataset.corpus}
    vectors: dict[str, list[tuple[int, int, np.ndarray]]] = {}
    for _, fields in store.iter_records(("metadatas", "embeddings")):
        for metadata, vector in zip(fields["metadatas"], fields["embeddings"], strict=True):
            doc_id = by_file.get(str(metadata.get("source", "")))
            if doc_id is not None:
                vectors.setdefault(doc_id, []).append(
                    (int(metadata.get("start", 0)), int(metadata.get("end", 0)), np.asarray(vector))
                )
    return vectors, best[1]


def write_collection(
    index_dir: Path,
    collection: str,
    n_chunks: int,
    dataset_dir: Path,
    cache: Path,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Write (or finish writing) ``n_chunks`` synthetic chunks into ``collection`` under
    ``index_dir`` through the product's Store, then stamp a new revision. Returns build facts;
    ``write_s`` counts only this call's writing."""
    from rag.chunking import Chunk, chunk_id
    from rag.embeddings import get_embedder
    from rag.evaluation import load_beir
    from rag.store import open_store

    dataset = load_beir(dataset_dir, "test")
    texts = Texts(dataset.corpus)
    chosen = windows(dataset.corpus, n_chunks)
    vectors, vector_source = source_vectors(dataset_dir, cache)
    embedded = sorted(vectors)
    bench_settings = settings(index_dir=index_dir, collection=collection, llm="extractive")
    store = open_store(bench_settings, get_embedder(bench_settings))
    per_file: dict[str, int] = {}
    position: list[int] = []
    for window in chosen:
        key = texts.key(window)
        position.append(per_file.get(key, 0))
        per_file[key] = position[-1] + 1
    done = (store.count() // BATCH) * BATCH
    if done:
        log(f"synthetic: resuming {collection} at {done} of {len(chosen)} chunks")
    started = time.perf_counter()
    for begin in range(done, len(chosen), BATCH):
        chunks: list[Chunk] = []
        extra: list[dict[str, Any]] = []
        rows = []
        for offset, window in enumerate(chosen[begin : begin + BATCH]):
            title = dataset.corpus[window.doc_id][0].strip()
            piece = texts.text(window)
            key = texts.key(window)
            index = position[begin + offset]
            chunks.append(
                Chunk(
                    id=chunk_id(key, index, window.start, piece),
                    text=piece,
                    source=Path(key).name,
                    title=title,
                    page=None,
                    start=window.start,
                    end=window.start + len(piece),
                    index=index,
                    content_hash=hashlib.sha256(piece.encode()).hexdigest()[:16],
                )
            )
            extra.append({"path": key, "doc_hash": "bench", "n_chunks": per_file[key]})
            own = vectors.get(window.doc_id)
            if not own:
                digest = int(hashlib.sha256(window.doc_id.encode()).hexdigest(), 16)
                own = vectors[embedded[digest % len(embedded)]]
            rows.append(next((v for a, b, v in own if a <= window.start < b), own[0][2]))
        base = np.asarray(rows, dtype=np.float32)
        rng = np.random.default_rng([SEED, begin])
        noise = rng.standard_normal(base.shape).astype(np.float32)
        noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
        mixed = base + noise
        mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
        store.upsert(chunks, mixed, extra)
        written = begin + len(chunks)
        if progress is not None:
            progress(written, time.perf_counter() - started)
    store.touch()
    return {
        "chunks": len(chosen),
        "vector_source": vector_source,
        "write_s": round(time.perf_counter() - started, 1),
        "resumed_at": done,
        "max_window_sentences": max(w.width for w in chosen),
        "variation_cycles": max(w.cycle for w in chosen),
    }


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
