"""The on-disk copy of a BM25 index (rag/bm25.py): saving, loading and recovery.

On disk (``index_dir/.rag/bm25-<collection>/``): ``manifest.json`` names the revision, the
base folder (bm25s's files, the records, float16 vectors, chunk lengths) and the delta folder
(records, vectors, postings, new terms, deletions), each written into a temporary folder and
renamed into place; the manifest is replaced last. A base or delta that fails to load is
rebuilt: a lost delta is recomputed from the base and the store's current chunk ids.

This module owns the file layout, the manifest and its ``FORMAT``, and the clean-up of folders
no manifest names. It imports ``rag.bm25`` (the in-memory index); that module never imports
this one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rag.bm25 import Base, BM25Index, Delta, Segment

FORMAT = "3"
KEEP_UNREFERENCED_SECONDS = 300.0
# The arrays of a Delta kept in its folder's postings.npz.
DELTA_ARRAYS = ("doc", "term", "tf", "lengths", "alive", "base_alive", "removed_df")


def write_segment(segment: Segment, folder: Path) -> None:
    """Write a segment's records (records.json) and vectors (vectors.npy, if any)."""
    rows = {"ids": segment.ids, "texts": segment.texts, "metadatas": segment.metadatas}
    (folder / "records.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    if segment.vectors is not None:
        np.save(folder / "vectors.npy", segment.vectors, allow_pickle=False)


def read_segment(folder: Path) -> Segment:
    """The segment ``write_segment`` wrote to ``folder``."""
    rows = json.loads((folder / "records.json").read_text(encoding="utf-8"))
    vectors_path = folder / "vectors.npy"
    vectors = np.load(vectors_path, allow_pickle=False) if vectors_path.exists() else None
    if vectors is not None and len(vectors) != len(rows["ids"]):
        raise ValueError("vectors and records differ in length")
    return Segment(rows["ids"], rows["texts"], rows["metadatas"], vectors)


def write_base(base: Base, folder: Path) -> None:
    """Write a base: bm25s's files, its records and its chunk lengths."""
    if base.retriever is not None:
        base.retriever.save(str(folder), show_progress=False)
    write_segment(base.records, folder)
    np.save(folder / "lengths.npy", base.lengths, allow_pickle=False)


def read_base(folder: Path) -> Base:
    """The base ``write_base`` wrote to ``folder`` (its ``folder`` set to the folder's name)."""
    import bm25s

    records = read_segment(folder)
    lengths = np.load(folder / "lengths.npy", allow_pickle=False)
    if len(lengths) != len(records):
        raise ValueError("lengths and records differ in length")
    retriever = None
    if len(records):
        retriever = bm25s.BM25.load(str(folder), show_progress=False, verbosity=0)
    return Base(records, retriever, lengths, folder=folder.name)


def write_delta(delta: Delta, folder: Path) -> None:
    """Write a delta: its records, its arrays (postings.npz) and its new terms."""
    write_segment(delta.records, folder)
    np.savez(folder / "postings.npz", **{name: getattr(delta, name) for name in DELTA_ARRAYS})
    (folder / "new_terms.json").write_text(
        json.dumps(delta.new_terms, ensure_ascii=False), encoding="utf-8"
    )


def read_delta(folder: Path, base: Base) -> Delta:
    """The delta ``write_delta`` wrote to ``folder``; ValueError if it is not ``base``'s."""
    records = read_segment(folder)
    with np.load(folder / "postings.npz", allow_pickle=False) as arrays:
        parts = {name: arrays[name] for name in DELTA_ARRAYS}
    new_terms = json.loads((folder / "new_terms.json").read_text(encoding="utf-8"))
    if (
        len(parts["base_alive"]) != len(base.records)
        or len(parts["removed_df"]) != base.vocab_size
        or len(parts["lengths"]) != len(records)
        or len(parts["alive"]) != len(records)
    ):
        raise ValueError("delta does not belong to this base")
    return Delta(records, **parts, new_terms=new_terms, folder=folder.name)


class BM25Cache:
    """The on-disk copy of an index, keyed by the collection revision it reflects."""

    def __init__(self, folder: Path):
        self.folder = folder

    def load(self) -> tuple[BM25Index, str] | None:
        """The cached index and the revision it is for; a base whose delta is unreadable
        comes back with revision "" (so the caller brings it up to date)."""
        try:
            manifest = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
            if manifest.get("format") != FORMAT:
                return None
            base = read_base(self.folder / manifest["base"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not manifest.get("delta"):
            return BM25Index(base), str(manifest["revision"])
        try:
            delta = read_delta(self.folder / manifest["delta"], base)
            return BM25Index(base, delta), str(manifest["revision"])
        except (OSError, ValueError, KeyError, TypeError):
            return BM25Index(base), ""

    def save(self, index: BM25Index, revision: str) -> None:
        """Write what is not on disk yet (the base once, the delta per change), then the
        manifest; folders no manifest names are removed once a few minutes old."""
        self.folder.mkdir(parents=True, exist_ok=True)
        base = index.base
        if base.folder is None or not (self.folder / base.folder).is_dir():
            base.folder = self._write("base", lambda folder: write_base(base, folder))
        delta = index.delta
        if len(delta.records) or not delta.base_alive.all():
            if delta.folder is None or not (self.folder / delta.folder).is_dir():
                delta.folder = self._write("delta", lambda folder: write_delta(delta, folder))
        else:
            delta.folder = None
        manifest = {
            "format": FORMAT,
            "revision": revision,
            "base": base.folder,
            "delta": delta.folder,
            "chunks": index.n,
        }
        tmp = self.folder / f".manifest-{uuid.uuid4().hex}.json"
        tmp.write_text(json.dumps(manifest), encoding="utf-8")
        os.replace(tmp, self.folder / "manifest.json")
        self._collect({base.folder, delta.folder})

    def _write(self, kind: str, write: Callable[[Path], None]) -> str:
        """Run ``write`` on a temporary folder, rename it into place; its new name."""
        name = f"{kind}-{uuid.uuid4().hex[:12]}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=self.folder))
        try:
            write(tmp)
            os.replace(tmp, self.folder / name)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return name

    def _collect(self, keep: set[str | None]) -> None:
        """Remove entries other than ``keep`` and the manifest once a few minutes old."""
        now = time.time()
        for path in self.folder.iterdir():
            if path.name in keep or path.name == "manifest.json":
                continue
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > KEEP_UNREFERENCED_SECONDS:
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink()
