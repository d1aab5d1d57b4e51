"""Ingestion: files → chunks → embeddings → the store, incrementally and safely.

- Unchanged files (same bytes, same chunking settings, all chunks present) cost one hash.
- A changed file's new chunks are written before its stale ones are deleted, and every chunk
  records its file's hash and chunk count, so a run killed at any point leaves an index the next
  run repairs: half-written files are seen as incomplete and redone, never counted as done.
- A file that fails to load is reported and skipped; whatever it had in the index stays.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.chunking import CHUNKER_VERSION, Chunk, chunk_document
from rag.config import Settings, load_settings
from rag.embeddings import Embedder
from rag.loaders import LoaderError, discover_files, file_sha256, load_file
from rag.store import IndexedFile, Store, embedder_for, open_store


@dataclass
class FileFailure:
    path: str
    error: str


@dataclass
class IngestReport:
    """What one ingest run did. ``to_dict`` is the ``rag ingest --json`` contract."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: list[FileFailure] = field(default_factory=list)
    chunks_written: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "failed": [{"path": f.path, "error": f.error} for f in self.failed],
            "chunks_written": self.chunks_written,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class IngestProgress:
    """Passed to the progress callback after each file is settled."""

    files_done: int
    files_total: int
    chunks_written: int
    current: str


ProgressCallback = Callable[[IngestProgress], None]


@dataclass
class _PlannedFile:
    path: Path
    key: str
    source: str


@dataclass
class _PendingFile:
    key: str
    source: str
    doc_hash: str
    chunks: list[Chunk]
    existing: IndexedFile | None


def pipeline_fingerprint(settings: Settings, embedding_model: str) -> str:
    """What besides a file's bytes decides its chunks: chunker version and settings, model."""
    return (
        f"chunker={CHUNKER_VERSION};size={settings.chunk_size};overlap={settings.chunk_overlap};"
        f"model={embedding_model}"
    )


def file_key(path: Path) -> str:
    """A file's identity in the index: its absolute path (symlinks not resolved)."""
    return os.path.abspath(path)


def plan_files(
    paths: Iterable[Path | str],
) -> tuple[list[_PlannedFile], list[Path], list[FileFailure], list[tuple[str, str]]]:
    """(files to consider, folder roots to prune under, missing paths, skipped files)."""
    planned: dict[str, _PlannedFile] = {}
    roots: list[Path] = []
    failures: list[FileFailure] = []
    skipped: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            failures.append(FileFailure(str(raw), "no such file or directory"))
            continue
        base = path if path.is_dir() else path.parent
        if path.is_dir():
            roots.append(Path(os.path.abspath(path)))
        found, skipped_here = discover_files(path)
        skipped.extend((str(p), reason) for p, reason in skipped_here)
        for file in found:
            key = file_key(file)
            source = Path(os.path.relpath(os.path.abspath(file), os.path.abspath(base))).as_posix()
            planned.setdefault(key, _PlannedFile(file, key, source))
    return list(planned.values()), roots, failures, skipped


def ingest(
    paths: Sequence[Path | str],
    settings: Settings | None = None,
    *,
    prune: bool = True,
    progress: ProgressCallback | None = None,
    embedder: Embedder | None = None,
    store: Store | None = None,
) -> IngestReport:
    """Bring the index in line with ``paths`` (files or folders, walked recursively).

    With ``prune`` (default), files that were indexed under an ingested folder and are gone
    from it are deleted from the index.
    """
    started = time.perf_counter()
    settings = settings or load_settings()
    embedder = embedder or embedder_for(settings)
    store = store or open_store(settings, embedder)
    report = IngestReport()
    planned, roots, missing, report.skipped = plan_files(paths)
    report.failed.extend(missing)
    indexed = store.indexed_files()
    fingerprint = pipeline_fingerprint(settings, embedder.name).encode()
    max_bytes = int(settings.max_file_mb * 1e6)
    pending: list[_PendingFile] = []
    pending_chunks = 0
    files_done = 0
    changed = False

    def notify(current: str) -> None:
        if progress is not None:
            progress(IngestProgress(files_done, len(planned), report.chunks_written, current))

    def flush() -> None:
        nonlocal pending_chunks, changed
        if not pending:
            return
        _write(store, embedder, pending, report)
        changed = True
        pending.clear()
        pending_chunks = 0

    try:
        for item in planned:
            existing = indexed.get(item.key)
            try:
                if item.path.stat().st_size > max_bytes:
                    load_file(item.path, max_bytes)  # raises the size error
                doc_hash = hashlib.sha256(
                    fingerprint + file_sha256(item.path).encode()
                ).hexdigest()[:32]
                if existing is not None and existing.is_complete(doc_hash):
                    report.unchanged += 1
                else:
                    document = load_file(item.path, max_bytes)
                    chunks = chunk_document(
                        document,
                        item.source,
                        item.key,
                        settings.chunk_size,
                        settings.chunk_overlap,
                    )
                    pending.append(_PendingFile(item.key, item.source, doc_hash, chunks, existing))
                    pending_chunks += len(chunks)
            except LoaderError as error:
                report.failed.append(FileFailure(str(item.path), str(error)))
            except OSError as error:
                report.failed.append(FileFailure(str(item.path), f"cannot read file: {error}"))
            files_done += 1
            if pending_chunks >= settings.ingest_flush_chunks:
                flush()
            notify(item.source)
        flush()
        notify("")
        if prune:
            doomed = _pruned_files(indexed, roots, {item.key for item in planned})
            for entry in doomed:
                store.delete(entry.chunk_ids)
                report.deleted += 1
            changed = changed or bool(doomed)
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        if changed:
            store.touch()
        report.seconds = time.perf_counter() - started
    return report


def _write(
    store: Store, embedder: Embedder, files: list[_PendingFile], report: IngestReport
) -> None:
    """Embed and store the chunks of ``files``, then drop their stale chunks."""
    chunks = [chunk for file in files for chunk in file.chunks]
    extra = [
        {"path": file.key, "doc_hash": file.doc_hash, "n_chunks": len(file.chunks)}
        for file in files
        for _ in file.chunks
    ]
    vectors = embedder.encode([chunk.search_text for chunk in chunks])
    store.upsert(chunks, vectors, extra)
    report.chunks_written += len(chunks)
    stale: list[str] = []
    for file in files:
        if file.existing is None:
            report.added += 1
            continue
        report.updated += 1
        fresh = {chunk.id for chunk in file.chunks}
        stale.extend(chunk_id for chunk_id in file.existing.chunk_ids if chunk_id not in fresh)
    store.delete(stale)


def _pruned_files(
    indexed: dict[str, IndexedFile], roots: list[Path], present: set[str]
) -> list[IndexedFile]:
    """Indexed files under one of ``roots`` that are no longer on disk there."""
    prefixes = tuple(str(root).rstrip(os.sep) + os.sep for root in roots)
    if not prefixes:
        return []
    return [
        entry
        for key, entry in indexed.items()
        if key.startswith(prefixes) and key not in present and not os.path.exists(key)
    ]


def index_stats(settings: Settings) -> dict[str, Any]:
    """The ``rag stats --json`` contract: what the collection holds (no model is loaded)."""
    store = Store(settings, None, None)
    files = store.indexed_files()
    metadata = store.metadata()
    return {
        "collection": settings.collection,
        "documents": len(files),
        "chunks": sum(len(entry.chunk_ids) for entry in files.values()),
        "sources": sorted(entry.source for entry in files.values()),
        "embedding_model": str(metadata.get("embedding_model") or _configured_model(settings)),
        "store": settings.store_mode,
    }


def _configured_model(settings: Settings) -> str:
    from rag.embeddings import resolve_model

    return resolve_model(settings.embedding_model)[1]


def reset_index(settings: Settings) -> bool:
    """Drop the collection. True if it existed."""
    return Store(settings, None, None).reset()
