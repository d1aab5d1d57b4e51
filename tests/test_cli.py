"""The `rag ingest / stats / reset` contract, through the real console script in subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

INGEST_KEYS = {
    "added": int,
    "updated": int,
    "unchanged": int,
    "deleted": int,
    "failed": list,
    "chunks_written": int,
    "seconds": float,
}
STATS_KEYS = {
    "collection": str,
    "documents": int,
    "chunks": int,
    "sources": list,
    "embedding_model": str,
    "store": str,
}


def check_shape(data: dict, keys: dict[str, type]) -> None:
    assert set(data) == set(keys), data
    for key, kind in keys.items():
        if kind is float:
            assert isinstance(data[key], (int, float)) and not isinstance(data[key], bool), key
        else:
            assert type(data[key]) is kind, (key, data[key])


def one_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout  # exactly one JSON object, nothing else on stdout
    return json.loads(lines[0])


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "tides.txt").write_text(
        "Tides at Valdoria rise by four metres in spring. The harbour closes at low tide."
    )
    (folder / "sub" / "ferry.md").write_text(
        "# Ferry\n\nThe ferry to Merren leaves at 8:00 and 16:00 every day."
    )
    (folder / "sub" / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    return folder


def test_ingest_stats_reset_contract(docs: Path, tmp_path: Path, run_rag) -> None:
    index = tmp_path / "index"
    first = run_rag("ingest", docs, "--index", index, "--json")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    data = one_json(first.stdout)
    check_shape(data, INGEST_KEYS)
    assert (data["added"], data["updated"], data["unchanged"], data["deleted"]) == (2, 0, 0, 0)
    assert data["failed"] == [] and data["chunks_written"] >= 2 and data["seconds"] > 0

    stats = run_rag("stats", "--index", index, "--json")
    assert stats.returncode == 0, stats.stderr
    info = one_json(stats.stdout)
    check_shape(info, STATS_KEYS)
    assert info == {
        "collection": "documents",
        "documents": 2,
        "chunks": data["chunks_written"],
        "sources": ["sub/ferry.md", "tides.txt"],
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
        "store": "embedded",
    }

    again = one_json(run_rag("ingest", docs, "--index", index, "--json").stdout)
    assert (again["unchanged"], again["chunks_written"], again["added"]) == (2, 0, 0)

    (docs / "tides.txt").unlink()
    kept = run_rag("ingest", docs, "--index", index, "--json", "--no-prune")
    assert kept.returncode == 0 and one_json(kept.stdout)["deleted"] == 0
    pruned = run_rag("ingest", docs, "--index", index)
    assert pruned.returncode == 0, pruned.stderr
    assert "1 deleted" in pruned.stdout and "0 failed" in pruned.stdout
    assert "photo.jpg" in pruned.stderr  # unsupported files are reported
    text_stats = run_rag("stats", "--index", index)
    assert "documents:  1" in text_stats.stdout and "sub/ferry.md" in text_stats.stdout

    # reset asks first; anything but yes keeps the index
    refused = run_rag("reset", "--index", index, input="n\n")
    assert refused.returncode == 1 and "Delete collection 'documents'" in refused.stderr
    no_answer = run_rag("reset", "--index", index)  # stdin at EOF: not a yes
    assert no_answer.returncode != 0 and "Traceback" not in no_answer.stderr
    assert one_json(run_rag("stats", "--index", index, "--json").stdout)["documents"] == 1
    confirmed = run_rag("reset", "--index", index, input="y\n")
    assert confirmed.returncode == 0 and "deleted collection 'documents'" in confirmed.stdout
    assert one_json(run_rag("stats", "--index", index, "--json").stdout)["chunks"] == 0
    nothing = run_rag("reset", "--index", index, "--yes")
    assert nothing.returncode == 0 and "nothing to delete" in nothing.stdout


def ingest_here(paths: list[Path], index: Path, embedder, **overrides) -> None:
    """Set-up through the Python API with the session's model (no model load in a subprocess)."""
    from rag.config import load_settings
    from rag.ingest import ingest

    report = ingest(paths, load_settings(index_dir=index, **overrides), embedder=embedder)
    assert report.ok


def test_ingest_exit_code_and_one_line_errors(
    docs: Path, tmp_path: Path, run_rag, embedder
) -> None:
    index = tmp_path / "index"
    ingest_here([docs], index, embedder)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "sub" / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj <<")
    result = run_rag("ingest", docs, "--index", index, "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    data = one_json(result.stdout)
    assert data["unchanged"] == 2
    failed = {Path(item["path"]).name: item["error"] for item in data["failed"]}
    assert set(failed) == {"empty.txt", "broken.pdf"}
    assert all(set(item) == {"path", "error"} for item in data["failed"])
    text = run_rag("ingest", docs, "--index", index)
    assert text.returncode == 1
    lines = [line for line in text.stderr.splitlines() if line.startswith("failed: ")]
    assert len(lines) == 2
    for line in lines:
        name = "empty.txt" if "empty.txt" in line else "broken.pdf"
        assert line.startswith(f"failed: {docs}") and name in line, line
        assert line.split(f"{name}: ", 1)[1], "reason after the file name"
    assert "2 failed" in text.stdout


def test_missing_path_fails_cleanly(tmp_path: Path, run_rag) -> None:
    result = run_rag("ingest", tmp_path / "nope", "--index", tmp_path / "i", "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    data = one_json(result.stdout)
    assert data["failed"] == [
        {"path": str(tmp_path / "nope"), "error": "no such file or directory"}
    ]


def test_single_file_and_collection_flag(docs: Path, tmp_path: Path, run_rag, embedder) -> None:
    index = tmp_path / "index"
    ingest_here([docs / "sub" / "ferry.md"], index, embedder, collection="ferries")
    again = run_rag(
        "ingest", docs / "sub" / "ferry.md", "--index", index, "--collection", "ferries", "--json"
    )
    assert again.returncode == 0, again.stderr
    assert one_json(again.stdout)["unchanged"] == 1
    stats = one_json(run_rag("stats", "--index", index, "--collection", "ferries", "--json").stdout)
    assert stats["sources"] == ["ferry.md"] and stats["collection"] == "ferries"
    other = one_json(run_rag("stats", "--index", index, "--json").stdout)
    assert other["chunks"] == 0


def test_odd_file_names(tmp_path: Path, run_rag, embedder) -> None:
    docs = tmp_path / "odd names"
    docs.mkdir()
    good = ["a b ü #1 'q\".txt", "-rf.txt", "日本語.md", "semi;colon$HOME.txt"]
    for name in good:
        (docs / name).write_text(f"Text of the file called {name} about ferries.")
    index = tmp_path / "index"
    ingest_here([docs], index, embedder)
    (docs / "bad\nname.txt").write_bytes(b"")
    (docs / "tab\tname.md").write_bytes(b"   ")
    result = run_rag("ingest", docs, "--index", index)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 2  # one line each, even for a name with a newline in it
    assert any("bad\\nname.txt: empty file" in line for line in failed), result.stderr
    assert any("tab\\tname.md: no text" in line for line in failed), result.stderr
    assert "4 unchanged" in result.stdout
    stats = one_json(run_rag("stats", "--index", index, "--json").stdout)
    assert sorted(stats["sources"]) == sorted(good)


def test_console_script_freezes_objects_only_at_exit(monkeypatch) -> None:
    """`rag` runs ``rag.cli:run``: the command, then (at exit, not before) a frozen collector,
    so shutdown skips collecting what the process made. ``main`` itself registers nothing."""
    import atexit
    import gc
    import sys
    from importlib.metadata import entry_points

    from rag import cli

    assert entry_points(group="console_scripts")["rag"].value == "rag.cli:run"
    registered: list = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(sys, "argv", ["rag", "--version"])
    with pytest.raises(SystemExit) as finished:
        cli.main()
    assert finished.value.code == 0 and registered == []
    with pytest.raises(SystemExit) as finished:
        cli.run()
    assert finished.value.code == 0 and registered == [gc.freeze]
    assert gc.get_freeze_count() == 0  # nothing frozen while the process goes on
