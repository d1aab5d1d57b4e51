"""Ingest throughput and overhead over a bare ``SentenceTransformer.encode`` (not a test).

    .venv/bin/python tests/reliability/measure_ingest.py [--docs 300] [--profile]

Writes N SciFact abstracts (../shared/bench/scifact) as .txt files into a temp folder, then,
with the model already loaded (model load is reported separately):
- ``ingest()`` of the folder into a fresh embedded index: chunks written, seconds, chunks/s;
- a bare ``SentenceTransformer.encode`` of the same ``chunk.search_text`` strings, with the same
  batch size (settings.embedding_batch_size) and normalisation;
- the ratio of the two; an unchanged re-ingest; and the wall time of the real `rag ingest` CLI
  (process start and model load included) into another fresh index.
Runs alternate and the best of ``--repeat`` is kept, to damp noise from a shared machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCIFACT = ROOT.parent / "shared" / "bench" / "scifact" / "corpus.jsonl"


def write_corpus(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(SCIFACT, encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i >= n:
                break
            doc = json.loads(line)
            (folder / f"{doc['_id']}.txt").write_text(f"{doc['title']}\n\n{doc['text']}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="cProfile one ingest")
    args = parser.parse_args()

    from rag.chunking import chunk_document
    from rag.config import load_settings
    from rag.embeddings import get_embedder
    from rag.ingest import file_key, ingest
    from rag.loaders import load_file

    work = Path(tempfile.mkdtemp(prefix="measure-ingest-"))
    corpus = work / "corpus"
    write_corpus(corpus, args.docs)
    settings = load_settings(index_dir=work / "index-0")
    embedder = get_embedder(settings)
    started = time.perf_counter()
    _ = embedder.model
    load_s = time.perf_counter() - started
    texts = []
    for path in sorted(corpus.iterdir()):
        document = load_file(path)
        texts += [
            c.search_text
            for c in chunk_document(
                document, path.name, file_key(path), settings.chunk_size, settings.chunk_overlap
            )
        ]
    embedder.model.encode(texts[:64], batch_size=settings.embedding_batch_size)  # warm-up

    ingest_s, encode_s, report = [], [], None
    for run in range(args.repeat):
        started = time.perf_counter()
        embedder.model.encode(
            texts,
            batch_size=settings.embedding_batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        encode_s.append(time.perf_counter() - started)
        fresh = settings.with_overrides(index_dir=work / f"index-{run + 1}")
        started = time.perf_counter()
        report = ingest([corpus], fresh)
        ingest_s.append(time.perf_counter() - started)
        assert report.ok and report.chunks_written == len(texts), report
    started = time.perf_counter()
    again = ingest([corpus], fresh)
    reingest_s = time.perf_counter() - started
    assert again.chunks_written == 0

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        ingest([corpus], settings.with_overrides(index_dir=work / "index-profiled"))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)

    started = time.perf_counter()
    rag = str(Path(sys.executable).parent / "rag")
    cli = subprocess.run(
        [rag, "ingest", str(corpus), "--json", "--index", str(work / "index-cli")],
        capture_output=True,
        text=True,
    )
    cli_s = time.perf_counter() - started
    assert cli.returncode == 0, cli.stderr
    best_ingest, best_encode = min(ingest_s), min(encode_s)
    print(
        json.dumps(
            {
                "docs": args.docs,
                "chunks": len(texts),
                "batch_size": settings.embedding_batch_size,
                "model_load_s": round(load_s, 2),
                "ingest_s": [round(s, 2) for s in ingest_s],
                "encode_s": [round(s, 2) for s in encode_s],
                "ingest_chunks_per_s": round(len(texts) / best_ingest, 1),
                "encode_chunks_per_s": round(len(texts) / best_encode, 1),
                "ingest_over_encode": round(best_ingest / best_encode, 3),
                "unchanged_reingest_s": round(reingest_s, 2),
                "cli_wall_s": round(cli_s, 2),
                "cli_report_s": json.loads(cli.stdout)["seconds"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
