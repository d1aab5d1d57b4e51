"""Concurrent use of the running app (`rag serve`, a real process): 16 gradio_client clients ask
10 questions each while uploads are ingested into the same index. Expected: 0 errors, every
answer cited with exact quotes (or the expected refusal), the index afterwards identical to a
clean ingest of the same files. Prints the throughput."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_ui_support import SEED_FILE, SEEDS, copy_index, running_ui

from rag.config import Settings, load_settings

CLIENTS = 16
PER_CLIENT = 10
ANSWERABLE = {
    "What share of Russia's microelectronics came from China in 2023?": "90%",
    "How much were Russia's machine tool imports from China worth?": "$900 million",
    "What share of Russia's machine tool imports came from China?": "70%",
    "Which Chinese companies provide optical components for Russian tanks?": "Hikvision",
    "What engines does China supply to Russia for cruise missiles?": "turbojet",
    "Does China deny providing direct military support to Russia?": "denies",
    "Who is preparing for diplomatic engagements with Chinese officials?": "Blinken",
    "Where will the Group of 7 foreign ministers meet?": "Italy",
}
UNANSWERABLE = ["Who won the 2022 football World Cup?", "What is the boiling point of mercury?"]
QUESTIONS = list(ANSWERABLE) + UNANSWERABLE


def _orchard_file(folder: Path, batch: int, number: int) -> Path:
    path = folder / f"orchard-{batch}-{number}.txt"
    lines = [
        f"Kestrel orchard log, batch {batch}, row {number}.",
        f"In week {number + 1} the pickers on row {number} harvested {40 + number * 7} crates "
        f"of Bramley apples and {12 + batch} crates of Conference pears.",
        "The irrigation pump on the north slope was serviced twice and the frost fans ran "
        "for three nights. " * 6,
        f"Row {number} is managed by picker team {chr(65 + number % 26)} this season.",
    ]
    path.write_text("\n\n".join(lines))
    return path


def _check(question: str, result: dict[str, Any], seed_text: str) -> str | None:
    """None when the result is right, else what is wrong."""
    if question in ANSWERABLE:
        if result["refused"] or not result["citations"]:
            return f"not answered/cited: {result['answer'][:120]}"
        for citation in result["citations"]:
            if citation["source"] != SEED_FILE.name:
                return f"cited {citation['source']}"
            if seed_text[citation["start"] : citation["end"]] != citation["quote"]:
                return "quote does not match the source text at its offsets"
            if f"[{citation['n']}]" not in result["answer"]:
                return f"marker [{citation['n']}] missing"
        if ANSWERABLE[question] not in " ".join(c["quote"] for c in result["citations"]):
            return f"expected {ANSWERABLE[question]!r} in the quotes: {result['answer'][:120]}"
        return None
    if not result["refused"] or result["citations"]:
        return f"should have been refused: {result['answer'][:120]}"
    return None


def _snapshot(settings: Settings) -> dict[str, list[str]]:
    """{file key: sorted chunk ids}, asserting each file is complete and ids are unique."""
    from rag.store import Store

    files = Store(settings, None, None).indexed_files()
    snapshot: dict[str, list[str]] = {}
    seen: set[str] = set()
    for key, entry in files.items():
        assert len(entry.doc_hashes) == 1 and len(entry.chunk_ids) == entry.n_chunks, key
        assert not seen & set(entry.chunk_ids), f"duplicate chunk ids in {key}"
        seen |= set(entry.chunk_ids)
        snapshot[key] = sorted(entry.chunk_ids)
    return snapshot


@pytest.mark.slow
def test_sixteen_clients_while_ingesting(
    seed_index: Settings, shared_embedder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradio_client import Client, handle_file

    index = copy_index(seed_index.index_dir, tmp_path / "index")
    seed_text = SEED_FILE.read_text(encoding="utf-8")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    errors: list[str] = []
    latencies: list[float] = []
    ingests: list[tuple[float, float, str]] = []
    lock = threading.Lock()
    questions_done = threading.Event()

    with running_ui(index, "--llm", "extractive") as ui:
        clients = [Client(ui.url, verbose=False) for _ in range(CLIENTS + 1)]
        uploader = clients.pop()

        def ask_all(number: int) -> None:
            client = clients[number]
            order = QUESTIONS[number % len(QUESTIONS) :] + QUESTIONS[: number % len(QUESTIONS)]
            for question in order[:PER_CLIENT]:
                began = time.perf_counter()
                try:
                    result = client.predict(question, api_name="/ask")
                    problem = _check(question, result, seed_text)
                except Exception as error:
                    problem = f"{type(error).__name__}: {error}"
                with lock:
                    latencies.append(time.perf_counter() - began)
                    if problem:
                        errors.append(f"client {number}: {question!r}: {problem}")

        def ingest_while_asking() -> None:
            batch = 0
            while batch < 2 or not questions_done.is_set():
                files = [_orchard_file(incoming, batch, n) for n in range(8)]
                began = time.perf_counter()
                try:
                    status, _, _ = uploader.predict(
                        [handle_file(str(path)) for path in files], api_name="/upload"
                    )
                except Exception as error:
                    status = f"{type(error).__name__}: {error}"
                with lock:
                    ingests.append((began, time.perf_counter(), status))
                batch += 1
                if batch >= 6:
                    break

        ingester = threading.Thread(target=ingest_while_asking)
        workers = [threading.Thread(target=ask_all, args=(n,)) for n in range(CLIENTS)]
        started = time.perf_counter()
        ingester.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(600)
        finished = time.perf_counter()
        questions_done.set()
        ingester.join(600)
        after = Client(ui.url, verbose=False).predict(
            "What share of Russia's microelectronics came from China in 2023?", api_name="/ask"
        )
        assert after["citations"]

    total = CLIENTS * PER_CLIENT
    seconds = finished - started
    overlapping = [entry for entry in ingests if entry[0] < finished and entry[1] > started]
    with capsys.disabled():
        print(
            f"\nload: {total} questions from {CLIENTS} clients in {seconds:.1f} s = "
            f"{total / seconds:.2f} questions/s; latency p50 "
            f"{statistics.median(latencies):.2f} s, p95 "
            f"{statistics.quantiles(latencies, n=20)[18]:.2f} s; {len(ingests)} uploads "
            f"({len(overlapping)} during the questions); errors: {len(errors)}"
        )
    assert len(latencies) == total
    assert errors == [], "\n".join(errors[:20])
    assert overlapping, "no ingest ran while the questions were being answered"
    for _, _, status in ingests:
        assert "8 added" in status and "0 failed" in status, status

    # The index equals a clean ingest of the same files: same files, same chunk ids, no dupes.
    from rag.ingest import ingest

    served = _snapshot(load_settings(index_dir=index))
    uploads = sorted((index.parent / "data" / "uploads").iterdir())
    assert len(uploads) == 8 * len(ingests)
    clean_settings = load_settings(index_dir=tmp_path / "clean" / "index")
    report = ingest([SEEDS, *uploads], clean_settings)
    assert report.ok
    assert served == _snapshot(clean_settings)
