"""Issue 7, bad files: every kind through the real `rag ingest`, next to good files and an
existing index. Each bad file gets one clear line naming it; the rest is ingested; nothing
already indexed is lost; the run ends (symlink loops) and never reads a huge file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from rag.config import load_settings
from rag.ingest import ingest

FRENCH = (
    "Le comité de Valdoria a décidé que le traversier partira à sept heures. "
    "Les élèves découvriront la côte et les phares pendant l'été."
)
GERMAN = "Die Fähre nach Merren fährt täglich um acht Uhr. Grüße aus Köln und Düsseldorf."
HARBOUR = (
    "The harbour of Valdoria handles forty container ships a week. "
    "Its lighthouse was rebuilt in 1911 after a storm destroyed the old tower."
)
DUPLICATE = "The Merren ferry timetable changes every October, when winter service begins."


def build_bad_corpus(root: Path, make_pdf) -> dict[str, str]:
    """Files of every bad kind (name -> expected words of the reason) plus good ones."""
    (root / "good").mkdir(parents=True)
    (root / "good" / "harbour.txt").write_text(HARBOUR)
    (root / "latin1.txt").write_bytes(FRENCH.encode("latin-1"))
    (root / "utf16.txt").write_bytes(GERMAN.encode("utf-16"))  # with BOM
    (root / "dup-a.txt").write_text(DUPLICATE)
    (root / "copies").mkdir()
    (root / "copies" / "dup-b.txt").write_text(DUPLICATE)
    (root / "loop" / "inner").mkdir(parents=True)
    (root / "loop" / "inner" / "deep.md").write_text("# Deep\n\nA file inside a symlink loop.")
    os.symlink(root / "loop", root / "loop" / "inner" / "back")  # loop/inner/back -> loop
    expected = {}
    (root / "empty.txt").write_bytes(b"")
    expected["empty.txt"] = "empty"
    (root / "binary.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 64)
    expected["binary.txt"] = "binary"
    data = make_pdf(root / "whole.pdf", ["Page text. " * 60] * 4).read_bytes()
    (root / "whole.pdf").unlink()
    (root / "truncated.pdf").write_bytes(data[: len(data) * 2 // 3])
    expected["truncated.pdf"] = "pdf"
    make_pdf(root / "encrypted.pdf", ["Secret plans."], user_password="hunter2")
    expected["encrypted.pdf"] = "encrypted"
    with zipfile.ZipFile(root / "archive.docx", "w") as archive:
        archive.writestr("readme.txt", "a zip, not a Word document")
    expected["archive.docx"] = "docx"
    with open(root / "huge.txt", "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: 200 MB that take no disk space
    expected["huge.txt"] = "too large"
    locked = root / "locked.txt"
    locked.write_text("You should not be able to read this.")
    locked.chmod(0)
    expected["locked.txt"] = "permission"
    return expected


def test_every_bad_file_kind_through_the_cli(
    tmp_path: Path, run_rag, make_pdf, embedder, index_dump, permission_drop_reason
) -> None:
    root = tmp_path / "corpus"
    index = tmp_path / "index"
    expected = build_bad_corpus(root, make_pdf)
    # something already indexed, which the bad files must not disturb
    report = ingest([root / "good"], load_settings(index_dir=index), embedder=embedder)
    assert report.ok and report.added == 1
    before = index_dump(index)

    result = run_rag("ingest", root, "--index", index, "--json", obey_permissions=True, timeout=400)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    failed = {
        Path(item["path"]).relative_to(root).as_posix(): item["error"] for item in data["failed"]
    }
    why_not = permission_drop_reason
    if why_not:  # root without a way to drop CAP_DAC_OVERRIDE: the file is simply readable
        expected.pop("locked.txt")
        assert "locked.txt" not in failed, why_not
    assert sorted(failed) == sorted(expected), failed
    for name, words in expected.items():
        assert words in failed[name].lower(), (name, failed[name])
        assert "\n" not in failed[name]
    # loop/inner/deep.md once, despite the loop; both duplicates; both legacy encodings
    assert data["added"] == 5 + (1 if why_not else 0)
    assert data["unchanged"] == 1

    after = index_dump(index)
    assert set(before) <= set(after)  # nothing already indexed was lost
    by_source: dict[str, list[str]] = {}
    for text, metadata in after.values():
        by_source.setdefault(metadata["source"], []).append(text)
    # (an unchanged file keeps the source label of the run that indexed it: good/ was the root)
    assert sorted(by_source) == sorted(
        [
            "harbour.txt",
            "latin1.txt",
            "utf16.txt",
            "dup-a.txt",
            "copies/dup-b.txt",
            "loop/inner/deep.md",
        ]
        + (["locked.txt"] if why_not else [])
    )
    assert " ".join(by_source["latin1.txt"]) == FRENCH  # decoded, not mojibake
    assert " ".join(by_source["utf16.txt"]) == GERMAN
    assert by_source["dup-a.txt"] == by_source["copies/dup-b.txt"] == [DUPLICATE]

    # the human-readable form: one "failed: PATH: reason" line per bad file
    text = run_rag("ingest", root, "--index", index, obey_permissions=True, timeout=400)
    assert text.returncode == 1 and "Traceback" not in text.stderr
    lines = [line for line in text.stderr.splitlines() if line.startswith("failed: ")]
    assert sorted(Path(line.split(": ")[1]).name for line in lines) == sorted(
        Path(name).name for name in expected
    )
    assert f"{len(expected)} failed" in text.stdout
    assert index_dump(index) == after  # a second run changes nothing
    (root / "locked.txt").chmod(0o644)


_MEASURED_RUN = """
import atexit, sys
def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("PEAK_RSS_KB " + line.split()[1] + "\\n")
atexit.register(report)
from rag.cli import main
sys.argv = ["rag", *sys.argv[1:]]
main()
"""


def _peak_rss_mb(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run `rag ARGS` in a fresh Python; its own peak resident memory (MB, VmHWM: not
    inherited from this big test process as ru_maxrss would be) and its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED_RUN, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    peaks = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("PEAK_RSS")]
    assert peaks, result.stderr[-3000:]
    return int(peaks[-1]) / 1024, result.stdout


def test_200mb_file_rejected_without_being_read(tmp_path: Path, rag_command) -> None:
    _, env = rag_command
    huge_dir = tmp_path / "huge"
    huge_dir.mkdir()
    huge = huge_dir / "huge.txt"
    with open(huge, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)
    assert huge.stat().st_blocks * 512 < 1024 * 1024, "the file must be sparse"
    small_dir = tmp_path / "small"
    small_dir.mkdir()
    (small_dir / "note.bin").write_bytes(b"x")  # unsupported: same code path, nothing read
    base_mb, _ = _peak_rss_mb(
        ["ingest", str(small_dir), "--index", str(tmp_path / "i1"), "--json"], env
    )
    peak_mb, output = _peak_rss_mb(
        ["ingest", str(huge_dir), "--index", str(tmp_path / "i2"), "--json"], env
    )
    data = json.loads(output.strip().splitlines()[-1])
    assert data["failed"][0]["path"] == str(huge)
    assert "too large" in data["failed"][0]["error"]
    assert "RAG_MAX_FILE_MB" in data["failed"][0]["error"]
    # the 200 MB were never loaded: peak memory is that of a run that reads nothing
    assert peak_mb < base_mb + 40, (peak_mb, base_mb)
    assert peak_mb < 200, peak_mb


def test_duplicate_files_are_cited_consistently(tmp_path: Path, shared_embedder) -> None:
    from rag.answer import RAG

    docs = tmp_path / "docs"
    (docs / "copies").mkdir(parents=True)
    (docs / "dup-a.txt").write_text(DUPLICATE)
    (docs / "copies" / "dup-b.txt").write_text(DUPLICATE)
    (docs / "harbour.txt").write_text(HARBOUR)
    settings = load_settings(index_dir=tmp_path / "index", llm="extractive")
    assert ingest([docs], settings, embedder=shared_embedder).added == 3
    question = "When does the Merren ferry timetable change?"
    answers = [RAG(settings).ask(question) for _ in range(3)]
    for answer in answers:
        assert not answer.refused and "October" in answer.answer
        assert {c.source for c in answer.citations} <= {"dup-a.txt", "copies/dup-b.txt"}
        assert {r.source for r in answer.retrieved[:2]} == {"dup-a.txt", "copies/dup-b.txt"}
    cited = [[(c.source, c.start, c.end) for c in answer.citations] for answer in answers]
    assert cited[0] == cited[1] == cited[2]  # the same copy every time
