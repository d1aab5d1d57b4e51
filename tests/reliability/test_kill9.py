"""Issue 7, faults: `kill -9` of a real `rag ingest` at several points (chosen by watching the
store fill up) on a corpus of a few hundred files, and a Ctrl-C (issue 2), then a re-run: the
index must equal a clean, uninterrupted ingest of the same files (same chunk ids, texts and
metadata; no duplicates) and answer vector queries. Then the same while files are being updated
and deleted."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from rag.config import load_settings
from rag.embeddings import Embedder
from rag.ingest import ingest

pytestmark = pytest.mark.slow

N_FILES = 200
SETTINGS = {
    "RAG_CHUNK_SIZE": "100",
    "RAG_CHUNK_OVERLAP": "20",
    "RAG_EMBEDDING_BATCH_SIZE": "16",
    "RAG_INGEST_FLUSH_CHUNKS": "16",
}
WORDS = " ".join(
    [
        "harbour ferry island lighthouse storm tide cargo ship crane pier dock sail wind rope",
        "net fish boat captain crew port map chart compass anchor gull reef bay cliff wave",
    ]
).split(" ")

_CHECK_SCRIPT = """
import json, sys
import numpy as np
from rag.config import load_settings
from rag.embeddings import Embedder
from rag.store import Store
store = Store(load_settings(index_dir=sys.argv[1]), None, None)
records, vectors = {}, {}
for ids, fields in store.iter_records(("documents", "metadatas", "embeddings")):
    for i, text, meta, vector in zip(ids, fields["documents"], fields["metadatas"],
                                     fields["embeddings"]):
        if i in records:
            sys.exit("DUPLICATE " + i)
        records[i] = [text, meta]
        vectors[i] = np.asarray(vector, dtype=np.float32)
if store.count() != len(records):
    sys.exit(f"count {store.count()} != records {len(records)}")
for i in sorted(vectors)[:: max(1, len(vectors) // 15)]:
    hit = store.query(vectors[i], 1)[0]
    if hit[0] != i and hit[1] < 0.9999:
        sys.exit(f"vector query for {i} found {hit}")
print(json.dumps(records))
"""


def write_corpus(root: Path, n: int, seed: int, version: str = "v1") -> None:
    rng = random.Random(seed)
    for i in range(n):
        # one chunk of at most 100 characters; every 20th file three or four
        words = rng.randrange(40, 50) if i % 20 == 0 else rng.randrange(3, 11)
        text = f"Record {i} {version}. " + " ".join(rng.choice(WORDS) for _ in range(words)) + "."
        path = root / f"part{i % 7}" / f"file{i:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def checked_dump(index: Path) -> dict[str, list]:
    result = subprocess.run(
        [sys.executable, "-c", _CHECK_SCRIPT, str(index)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def log_position(index: Path) -> tuple[int, int]:
    """(records applied to the store, highest write-log sequence number), read-only."""
    try:
        db = sqlite3.connect(f"file:{index / 'chroma.sqlite3'}?mode=ro", uri=True, timeout=0.05)
        try:
            applied = db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
            logged = db.execute("SELECT max(seq_id) FROM embeddings_queue").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return (-1, -1)
    return int(applied), int(logged or 0)


def ingest_killed_when(
    rag_command, corpus: Path, index: Path, condition, timeout=300, sig=signal.SIGKILL
) -> str:
    """Start `rag ingest`, send ``sig`` (SIGKILL) as soon as ``condition(applied, logged)``
    holds; returns what the condition saw. Fails if the ingest ends before that point."""
    rag, env = rag_command
    process = subprocess.Popen(
        [rag, "ingest", str(corpus), "--index", str(index), "--json"],
        env={**env, **SETTINGS},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A runner started in the background (`pytest &`, some CI shells) ignores SIGINT, and
        # children inherit that: restore the default so Ctrl-C reaches the ingest as it would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            applied, logged = log_position(index)
            if applied >= 0 and condition(applied, logged):
                os.kill(process.pid, sig)
                out, err = process.communicate(timeout=60)
                if sig == signal.SIGINT:  # Ctrl-C: a clean message and status 130
                    assert process.returncode == 130, (out, err[-3000:])
                    assert "Traceback" not in err and "interrupted" in err, err[-3000:]
                return f"{sig.name} at applied={applied} logged={logged}"
            time.sleep(0.02)
        out, err = process.communicate(timeout=30)
        pytest.fail(f"the ingest ended before the kill point: {out[-500:]} {err[-2000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def ingest_to_end(run_rag, corpus: Path, index: Path) -> dict:
    result = run_rag("ingest", corpus, "--index", index, "--json", env=SETTINGS, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def assert_complete_files(records: dict[str, list]) -> None:
    files: dict[str, list[dict]] = {}
    for _, metadata in records.values():
        files.setdefault(metadata["path"], []).append(metadata)
    for path, chunks in files.items():
        assert sorted(m["chunk_index"] for m in chunks) == list(range(len(chunks))), path
        assert {m["n_chunks"] for m in chunks} == {len(chunks)}, path
        assert len({m["doc_hash"] for m in chunks}) == 1, path


class RecordsOnlyEmbedder:
    """Stands in for the model in the reference ingest: the records (ids, texts, metadata) come
    from the real pipeline; only the vectors, which the comparison leaves out, are made up."""

    def __init__(self, real) -> None:
        self.name, self.dimension = real.name, real.dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.stack(
            [
                np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dimension)
                for t in texts
            ]
        ).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_kill9_during_ingest_then_rerun_equals_clean_ingest(
    tmp_path: Path, rag_command, run_rag
) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus, N_FILES, seed=1)
    index = tmp_path / "index"
    reference_index = tmp_path / "reference"
    reference = load_settings(
        index_dir=reference_index, chunk_size=100, chunk_overlap=20, embedding_batch_size=16
    )
    stand_in = RecordsOnlyEmbedder(Embedder("packaged"))  # name and size, no model load
    assert ingest([corpus], reference, embedder=stand_in).ok
    clean = checked_dump(reference_index)
    total = len(clean)
    assert total > N_FILES  # some files have several chunks

    seen = [
        # 1. after the first batches, in the window where the store's write log is ahead of
        #    what it has applied (a write in flight)
        ingest_killed_when(
            rag_command, corpus, index, lambda applied, logged: logged > applied >= 16
        ),
        # 2. late: two thirds of the corpus written
        ingest_killed_when(
            rag_command, corpus, index, lambda applied, logged: applied >= total * 2 // 3
        ),
        # 3. Ctrl-C near the end
        ingest_killed_when(
            rag_command,
            corpus,
            index,
            lambda applied, logged: applied >= total * 5 // 6,
            sig=signal.SIGINT,
        ),
    ]
    partial = checked_dump(index)
    assert 0 < len(partial) < total, seen
    assert_complete_files({i: r for i, r in partial.items() if i in clean})
    report = ingest_to_end(run_rag, corpus, index)
    assert report["failed"] == [] and report["added"] + report["updated"] >= 1
    assert report["added"] + report["updated"] + report["unchanged"] == N_FILES
    after = checked_dump(index)
    assert after == clean, seen  # same ids, texts and metadata; no duplicates, no leftovers
    assert_complete_files(after)
    again = ingest_to_end(run_rag, corpus, index)
    assert (again["unchanged"], again["chunks_written"]) == (N_FILES, 0)

    # Updates: change 30 files, delete 10, add 8; kill while it rewrites them.
    rng = random.Random(5)
    changed = rng.sample(range(N_FILES), 30)
    for i in changed:
        path = corpus / f"part{i % 7}" / f"file{i:03d}.txt"
        path.write_text(f"Record {i} v2 rewritten. " + " ".join(rng.choices(WORDS, k=14)) + ".")
    for i in rng.sample(sorted(set(range(N_FILES)) - set(changed)), 10):
        (corpus / f"part{i % 7}" / f"file{i:03d}.txt").unlink()
    write_corpus(corpus / "new", 8, seed=9, version="v3")
    assert ingest([corpus], reference, embedder=stand_in).ok
    clean = checked_dump(reference_index)
    start = log_position(index)[1]
    seen.append(
        ingest_killed_when(rag_command, corpus, index, lambda applied, logged: logged >= start + 24)
    )
    report = ingest_to_end(run_rag, corpus, index)
    assert report["failed"] == []
    after = checked_dump(index)
    assert after == clean, seen
    assert_complete_files(after)
    print("kill points:", "; ".join(seen))
