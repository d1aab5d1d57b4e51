"""Ingestion through the Python API: real files, real Chroma in a temp dir, real embeddings."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from rag.config import Settings
from rag.ingest import IngestProgress, index_stats, ingest
from rag.loaders import load_file
from rag.store import Store, open_store

SENTENCES = [
    "The harbour of Valdoria handles forty container ships a week.",
    "Its lighthouse was rebuilt in 1911 after a storm destroyed the old tower.",
    "Fishing boats leave before dawn and return by noon with sardines.",
    "The town council meets on the first Monday of every month.",
    "A ferry connects Valdoria with the island of Merren twice a day.",
]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def records(settings: Settings) -> dict[str, tuple[str, dict]]:
    """Every stored chunk: {id: (text, metadata)}."""
    out: dict[str, tuple[str, dict]] = {}
    for ids, fields in Store(settings, None, None).iter_records(("documents", "metadatas")):
        for chunk_id, text, metadata in zip(
            ids, fields["documents"], fields["metadatas"], strict=True
        ):
            assert chunk_id not in out
            out[chunk_id] = (text, metadata)
    return out


def by_source(settings: Settings) -> dict[str, list[tuple[str, dict]]]:
    grouped: dict[str, list[tuple[str, dict]]] = {}
    for chunk_id, (text, metadata) in records(settings).items():
        grouped.setdefault(metadata["source"], []).append((chunk_id, metadata | {"text": text}))
    for chunks in grouped.values():
        chunks.sort(key=lambda item: item[1]["chunk_index"])
    return grouped


def assert_consistent(settings: Settings) -> None:
    """Every file's chunks are one complete version: indexes 0..n-1, one doc_hash, n_chunks."""
    for source, chunks in by_source(settings).items():
        metadata = [m for _, m in chunks]
        assert [m["chunk_index"] for m in metadata] == list(range(len(chunks))), source
        assert {m["n_chunks"] for m in metadata} == {len(chunks)}, source
        assert len({m["doc_hash"] for m in metadata}) == 1, source
        assert len({m["path"] for m in metadata}) == 1, source


@pytest.fixture
def corpus(tmp_path: Path, make_pdf, make_docx) -> Path:
    root = tmp_path / "corpus"
    write(root / "harbour.txt", "Valdoria Harbour\n\n" + " ".join(SENTENCES * 6))
    write(root / "notes" / "guide.md", "# Ferry Guide\n\n" + " ".join(reversed(SENTENCES)) * 4)
    write(
        root / "notes" / "page.html",
        "<html><head><title>Council</title></head><body><h1>Council</h1>"
        + "".join(f"<p>{s}</p>" for s in SENTENCES)
        + "</body></html>",
    )
    make_pdf(
        root / "reports" / "annual.pdf",
        [
            "Annual report page one.\n" + "\n".join(SENTENCES[:3]),
            "",
            "Page three.\n" + SENTENCES[4],
        ],
        title="Annual Report",
    )
    make_docx(
        root / "reports" / "memo.docx",
        SENTENCES[:2],
        table=[["Ship", "Tonnage"], ["Aurora", "1200"]],
        heading="Memo",
    )
    return root


def small_settings(settings: Settings, **overrides) -> Settings:
    return settings.with_overrides(chunk_size=200, chunk_overlap=40, **overrides)


def test_ingest_every_type_with_offsets_pages_and_metadata(corpus, settings, embedder) -> None:
    settings = small_settings(settings)
    report = ingest([corpus], settings, embedder=embedder)
    assert report.ok, report.failed
    assert (report.added, report.updated, report.unchanged, report.deleted) == (5, 0, 0, 0)
    grouped = by_source(settings)
    assert sorted(grouped) == [
        "harbour.txt",
        "notes/guide.md",
        "notes/page.html",
        "reports/annual.pdf",
        "reports/memo.docx",
    ]
    assert report.chunks_written == sum(len(c) for c in grouped.values())
    assert_consistent(settings)
    for source, chunks in grouped.items():
        text = load_file(corpus / source).text
        for chunk_id, metadata in chunks:
            assert metadata["text"] == text[metadata["start"] : metadata["end"]], source
            assert metadata["path"] == str(corpus / source)
            assert len(chunk_id) == 32
    titles = {source: chunks[0][1]["title"] for source, chunks in grouped.items()}
    assert titles["harbour.txt"] == "Valdoria Harbour"
    assert titles["notes/guide.md"] == "Ferry Guide"
    assert titles["notes/page.html"] == "Council"
    assert titles["reports/annual.pdf"] == "Annual Report"
    assert titles["reports/memo.docx"] == "Memo"
    pdf_pages = {m["page"] for _, m in grouped["reports/annual.pdf"]}
    assert pdf_pages == {1, 3}
    page3 = [m for _, m in grouped["reports/annual.pdf"] if m["page"] == 3]
    assert all(SENTENCES[4] in m["text"] for m in page3)
    assert all("page" not in m for _, m in grouped["harbour.txt"])
    assert any("Aurora | 1200" in m["text"] for _, m in grouped["reports/memo.docx"])
    # embeddings are normalised and retrievable
    store = open_store(settings, embedder)
    hits = store.query(embedder.encode_query("When was the lighthouse rebuilt?"), 3)
    assert hits and hits[0][1] > 0.5
    stats = index_stats(settings)
    assert stats["documents"] == 5 and stats["chunks"] == report.chunks_written
    assert stats["store"] == "embedded"


def test_reingest_unchanged_embeds_and_writes_nothing(
    corpus, settings, embedder, monkeypatch
) -> None:
    settings = small_settings(settings)
    first = ingest([corpus], settings, embedder=embedder)
    store = Store(settings, None, None)
    revision, before = store.revision(), records(settings)

    def forbidden(*args, **kwargs):
        raise AssertionError("an unchanged corpus must not be embedded or written")

    monkeypatch.setattr(embedder, "encode", forbidden)
    monkeypatch.setattr(Store, "upsert", forbidden)
    monkeypatch.setattr(Store, "delete", forbidden)
    monkeypatch.setattr(Store, "touch", forbidden)
    started = time.perf_counter()
    second = ingest([corpus], settings, embedder=embedder)
    elapsed = time.perf_counter() - started
    assert second.ok
    assert (second.added, second.updated, second.unchanged, second.deleted) == (0, 0, 5, 0)
    assert second.chunks_written == 0
    assert elapsed < max(3.0, first.seconds), (elapsed, first.seconds)
    assert Store(settings, None, None).revision() == revision
    assert records(settings) == before


def test_same_input_gives_same_ids_in_another_index(corpus, settings, embedder, tmp_path) -> None:
    settings = small_settings(settings)
    ingest([corpus], settings, embedder=embedder)
    other = settings.with_overrides(index_dir=tmp_path / "other-index")
    ingest([corpus], other, embedder=embedder)
    assert set(records(settings)) == set(records(other))


def test_changed_file_replaces_its_chunks(corpus, settings, embedder) -> None:
    settings = small_settings(settings)
    ingest([corpus], settings, embedder=embedder)
    old = {i for i, m in by_source(settings)["harbour.txt"]}
    others = {i for s, c in by_source(settings).items() if s != "harbour.txt" for i, _ in c}
    write(corpus / "harbour.txt", "Valdoria Harbour\n\nThe harbour now has a new crane. " * 3)
    report = ingest([corpus], settings, embedder=embedder)
    assert (report.added, report.updated, report.unchanged) == (0, 1, 4)
    assert report.chunks_written == len(by_source(settings)["harbour.txt"])
    new_chunks = by_source(settings)["harbour.txt"]
    assert all("new crane" in m["text"] for _, m in new_chunks)
    assert not any("lighthouse" in m["text"] for _, m in new_chunks)
    assert old - {i for i, _ in new_chunks}, "the old chunks must be gone"
    assert {i for s, c in by_source(settings).items() if s != "harbour.txt" for i, _ in c} == others
    assert_consistent(settings)
    text = load_file(corpus / "harbour.txt").text
    for _, metadata in new_chunks:
        assert metadata["text"] == text[metadata["start"] : metadata["end"]]


def test_growing_and_shrinking_file_leaves_no_stale_chunks(settings, embedder, tmp_path) -> None:
    settings = small_settings(settings)
    path = write(tmp_path / "docs" / "log.txt", " ".join(SENTENCES * 8))
    ingest([tmp_path / "docs"], settings, embedder=embedder)
    many = len(records(settings))
    write(path, SENTENCES[0])
    ingest([tmp_path / "docs"], settings, embedder=embedder)
    assert len(records(settings)) == 1 < many
    write(path, " ".join(SENTENCES * 8))
    ingest([tmp_path / "docs"], settings, embedder=embedder)
    assert len(records(settings)) == many
    assert_consistent(settings)


def test_deleted_file_is_pruned_and_no_prune_keeps_it(corpus, settings, embedder) -> None:
    settings = small_settings(settings)
    ingest([corpus], settings, embedder=embedder)
    (corpus / "notes" / "guide.md").unlink()
    kept = ingest([corpus], settings, embedder=embedder, prune=False)
    assert kept.deleted == 0 and "notes/guide.md" in by_source(settings)
    shutil.rmtree(corpus / "reports")
    report = ingest([corpus], settings, embedder=embedder)
    assert report.deleted == 3
    assert sorted(by_source(settings)) == ["harbour.txt", "notes/page.html"]
    assert index_stats(settings)["documents"] == 2


def test_missing_root_prunes_nothing(corpus, settings, embedder, tmp_path) -> None:
    settings = small_settings(settings)
    ingest([corpus], settings, embedder=embedder)
    moved = tmp_path / "moved-away"
    corpus.rename(moved)  # e.g. an unmounted drive
    report = ingest([corpus], settings, embedder=embedder)
    assert not report.ok and report.failed[0].path == str(corpus)
    assert "no such file" in report.failed[0].error
    assert report.deleted == 0 and len(by_source(settings)) == 5


def test_nested_and_sibling_roots_do_not_prune_each_other(settings, embedder, tmp_path) -> None:
    settings = small_settings(settings)
    write(tmp_path / "data" / "top.txt", SENTENCES[0])
    write(tmp_path / "data" / "sub" / "inner.txt", SENTENCES[1])
    write(tmp_path / "data2" / "sibling.txt", SENTENCES[2])  # shares the prefix "data"
    write(tmp_path / "elsewhere" / "single.txt", SENTENCES[3])
    report = ingest(
        [tmp_path / "data", tmp_path / "data" / "sub", tmp_path / "elsewhere" / "single.txt"],
        settings,
        embedder=embedder,
    )
    assert report.added == 3  # inner.txt once, although under two roots
    ingest([tmp_path / "data2"], settings, embedder=embedder)
    keys = lambda: sorted(m["path"] for _, m in records(settings).values())  # noqa: E731
    assert len(keys()) == 4
    # a run over the nested root alone must not prune the outer root's files ...
    report = ingest([tmp_path / "data" / "sub"], settings, embedder=embedder)
    assert (report.unchanged, report.deleted) == (1, 0)
    # ... and a run over data/ must not touch data2/ (same prefix) or a single-file ingest
    (tmp_path / "data" / "top.txt").unlink()
    report = ingest([tmp_path / "data"], settings, embedder=embedder)
    assert report.deleted == 1
    assert keys() == sorted(
        [
            str(tmp_path / "data" / "sub" / "inner.txt"),
            str(tmp_path / "data2" / "sibling.txt"),
            str(tmp_path / "elsewhere" / "single.txt"),
        ]
    )
    # a single file given by path is never pruned by a folder run elsewhere
    report = ingest([tmp_path / "elsewhere"], settings, embedder=embedder)
    assert report.unchanged == 1 and report.deleted == 0


def test_bad_files_reported_one_line_each_and_others_ingested(
    settings, embedder, tmp_path, make_pdf
) -> None:
    import zipfile

    settings = small_settings(settings, max_file_mb=1)
    root = tmp_path / "mixed"
    write(root / "good.txt", " ".join(SENTENCES))
    write(root / "also-good.md", "# Fine\n\n" + SENTENCES[2])
    (root / "empty.txt").write_bytes(b"")
    (root / "binary.txt").write_bytes(b"\x00\x01\x02\xff" * 500)
    good_pdf = make_pdf(root / "tmp.pdf", ["Some text. " * 50] * 3).read_bytes()
    (root / "tmp.pdf").unlink()
    (root / "truncated.pdf").write_bytes(good_pdf[: len(good_pdf) // 2])
    make_pdf(root / "encrypted.pdf", ["Secret."], user_password="pw")
    with zipfile.ZipFile(root / "archive.docx", "w") as archive:
        archive.writestr("x.txt", "not word")
    with open(root / "huge.txt", "wb") as handle:
        handle.truncate(5_000_000)
    (root / "image.png").write_bytes(b"\x89PNG")
    report = ingest([root], settings, embedder=embedder)
    assert report.added == 2
    failed = {Path(f.path).name: f.error for f in report.failed}
    assert sorted(failed) == [
        "archive.docx",
        "binary.txt",
        "empty.txt",
        "encrypted.pdf",
        "huge.txt",
        "truncated.pdf",
    ]
    for failure in report.failed:
        assert Path(failure.path).parent == root
        assert failure.error and "\n" not in failure.error
    assert "empty" in failed["empty.txt"]
    assert "binary" in failed["binary.txt"]
    assert "truncated" in failed["truncated.pdf"] or "corrupt" in failed["truncated.pdf"]
    assert "encrypted" in failed["encrypted.pdf"]
    assert "docx" in failed["archive.docx"]
    assert "too large" in failed["huge.txt"]
    assert [Path(p).name for p, _ in report.skipped] == ["image.png"]
    assert sorted(by_source(settings)) == ["also-good.md", "good.txt"]
    assert not report.ok and report.to_dict()["failed"][0].keys() == {"path", "error"}


def test_file_that_turns_bad_keeps_what_was_indexed(settings, embedder, tmp_path) -> None:
    settings = small_settings(settings)
    path = write(tmp_path / "docs" / "a.txt", " ".join(SENTENCES))
    ingest([tmp_path / "docs"], settings, embedder=embedder)
    before = records(settings)
    path.write_bytes(b"\x00garbage" * 100)
    report = ingest([tmp_path / "docs"], settings, embedder=embedder)
    assert [Path(f.path).name for f in report.failed] == ["a.txt"]
    assert report.deleted == 0 and records(settings) == before


def test_half_written_and_mixed_files_are_repaired(corpus, settings, embedder) -> None:
    """What a crash can leave: a file with some chunks missing, or old and new chunks mixed."""
    settings = small_settings(settings)
    ingest([corpus], settings, embedder=embedder)
    clean = records(settings)
    grouped = by_source(settings)
    collection = open_store(settings, embedder).collection()
    # half-written: drop all but the first chunk of one file
    harbour_ids = [i for i, _ in grouped["harbour.txt"]]
    assert len(harbour_ids) > 2
    collection.delete(ids=harbour_ids[1:])
    # mixed versions: one chunk of another file claims an older version
    guide_id, guide_meta = grouped["notes/guide.md"][0]
    stale = {k: v for k, v in guide_meta.items() if k != "text"} | {"doc_hash": "old-version"}
    collection.update(ids=[guide_id], metadatas=[stale])
    # an orphan chunk of an older version of the file, under an id no longer produced
    collection.add(
        ids=["orphan-chunk-id"],
        embeddings=[[0.0] * (embedder.dimension - 1) + [1.0]],
        documents=["stale text"],
        metadatas=[stale | {"chunk_index": 99}],
    )
    report = ingest([corpus], settings, embedder=embedder)
    assert (report.updated, report.unchanged) == (2, 3)
    assert records(settings) == clean
    assert_consistent(settings)


def test_keyboard_interrupt_mid_ingest_then_rerun_repairs(settings, embedder, tmp_path) -> None:
    settings = small_settings(settings, ingest_flush_chunks=2)
    root = tmp_path / "many"
    for n in range(12):
        write(root / f"f{n:02d}.txt", f"File {n}. " + " ".join(SENTENCES[n % 5 :] * 2))
    reference = settings.with_overrides(index_dir=tmp_path / "reference")
    ingest([root], reference, embedder=embedder)

    def interrupt(event: IngestProgress) -> None:
        if event.files_done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest([root], settings, embedder=embedder, progress=interrupt)
    partial = records(settings)
    assert 0 < len(partial) < len(records(reference))
    report = ingest([root], settings, embedder=embedder)
    assert report.ok and report.added + report.unchanged == 12
    assert records(settings) == records(reference)


def test_chunk_settings_change_rechunks_everything(corpus, settings, embedder) -> None:
    small = small_settings(settings)
    ingest([corpus], small, embedder=embedder)
    n_small = len(records(small))
    bigger = small.with_overrides(chunk_size=400, chunk_overlap=0)
    report = ingest([corpus], bigger, embedder=embedder)
    assert report.updated == 5 and report.unchanged == 0
    assert len(records(bigger)) < n_small
    assert_consistent(bigger)


def test_duplicate_content_under_two_names_indexed_once_per_path(
    settings, embedder, tmp_path
) -> None:
    settings = small_settings(settings)
    text = " ".join(SENTENCES)
    write(tmp_path / "d" / "copy-a.txt", text)
    write(tmp_path / "d" / "sub" / "copy-b.txt", text)
    os.link(tmp_path / "d" / "copy-a.txt", tmp_path / "d" / "hardlink.txt")
    report = ingest(
        [tmp_path / "d", tmp_path / "d" / "copy-a.txt", tmp_path / "d" / "sub"],
        settings,
        embedder=embedder,
    )
    assert report.added == 3
    grouped = by_source(settings)
    assert sorted(grouped) == ["copy-a.txt", "hardlink.txt", "sub/copy-b.txt"]
    texts = {source: [m["text"] for _, m in chunks] for source, chunks in grouped.items()}
    assert texts["copy-a.txt"] == texts["hardlink.txt"] == texts["sub/copy-b.txt"]
    again = ingest([tmp_path / "d"], settings, embedder=embedder)
    assert again.unchanged == 3 and again.chunks_written == 0


def test_progress_reports_files_and_chunks(corpus, settings, embedder) -> None:
    events: list[IngestProgress] = []
    report = ingest([corpus], small_settings(settings), embedder=embedder, progress=events.append)
    assert events[-1].files_done == events[-1].files_total == 5
    assert events[-1].chunks_written == report.chunks_written
    assert [e.files_done for e in events] == sorted(e.files_done for e in events)


def test_unreadable_file_reported(settings, embedder, tmp_path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads chmod-000 files; covered as an unprivileged user in test_cli.py")
    settings = small_settings(settings)
    write(tmp_path / "p" / "ok.txt", SENTENCES[0])
    locked = write(tmp_path / "p" / "locked.txt", SENTENCES[1])
    locked.chmod(0)
    try:
        report = ingest([tmp_path / "p"], settings, embedder=embedder)
    finally:
        locked.chmod(0o644)
    assert report.added == 1
    assert [(Path(f.path).name, "permission" in f.error) for f in report.failed] == [
        ("locked.txt", True)
    ]
