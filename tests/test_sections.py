"""Section headings: found in markdown, HTML and Word files, turned into paths, kept by chunks."""

from __future__ import annotations

import json
from pathlib import Path

from rag.chunking import chunk_document, search_text
from rag.loaders import load_file
from rag.retrieval import RetrievedChunk
from rag.sections import (
    Heading,
    located,
    markdown_headings,
    markdown_title,
    path_at,
    plain_heading,
    section_paths,
    underlined_headings,
)

GUIDE = (
    "# Fleet guide\n\n"
    "Read this first.\n\n"
    "## Refuelling\n\n"
    "Fuel is taken on at Port Ederly only.\n\n"
    "```bash\n# not a heading, a shell comment\n```\n\n"
    "### Spills ###\n\n"
    "Report a spill at once.\n\n"
    "## Daily checks\n\n"
    "Check the bilge alarms every morning.\n"
)


def test_markdown_headings_skip_code_and_closing_hashes() -> None:
    headings = markdown_headings(GUIDE)
    assert [(h.level, h.text) for h in headings] == [
        (1, "Fleet guide"),
        (2, "Refuelling"),
        (3, "Spills"),
        (2, "Daily checks"),
    ]
    for heading in headings:
        assert GUIDE[heading.start :].lstrip("# ").startswith(heading.text)
    assert markdown_headings("#hashtag, not a heading\n    # indented code\n") == []


def test_setext_headings_are_one_line_paragraphs_underlined() -> None:
    text = (
        "Ferry guide\n===========\n\n"
        "A paragraph of two lines\nends with a rule.\n---\n\n"
        "Refuelling\n----------\n\nFuel is taken on at Port Ederly.\n\n"
        "- a list item\n---\n\n| a | b |\n|---|---|\n"
    )
    headings = markdown_headings(text)
    assert [(h.level, h.text) for h in headings] == [(1, "Ferry guide"), (2, "Refuelling")]
    assert [text[h.start :].split("\n")[0] for h in headings] == ["Ferry guide", "Refuelling"]


def test_paths_nest_close_and_leave_out_the_title() -> None:
    paths = section_paths(markdown_headings(GUIDE), "Fleet guide")
    assert [path for _, path in paths] == [
        "Refuelling",
        "Refuelling › Spills",
        "Daily checks",  # a level-2 heading closes the level-3 one
    ]
    spill = GUIDE.index("Report a spill")
    assert path_at(paths, spill) == "Refuelling › Spills"
    assert path_at(paths, GUIDE.index("Read this first")) == ""
    heading_line = GUIDE.index("## Daily checks")
    assert path_at(paths, heading_line) == "Refuelling › Spills"  # read under the path above
    # a heading the title already holds (as whole words) adds nothing to paths
    held = section_paths([Heading(0, 1, "Fares"), Heading(10, 2, "Art")], "Timetables and Fares")
    assert held == [(10, "Art")]


def test_html_and_docx_headings_point_at_their_lines(tmp_path: Path, make_docx) -> None:
    html = tmp_path / "fares.html"
    html.write_text(
        "<html><head><title>Timetables and Fares 2024</title></head><body>"
        "<h1>Timetables and Fares 2024</h1><p>All sailings.</p>"
        "<h2>Port Ederly &ndash; Vell Island</h2><p>Hourly from 07:15.</p>"
        "<h3>Notes</h3><p>No sailings on 25 December.</p></body></html>",
        encoding="utf-8",
    )
    document = load_file(html)
    assert [(h.level, h.text) for h in document.headings] == [
        (1, "Timetables and Fares 2024"),
        (2, "Port Ederly – Vell Island"),
        (3, "Notes"),
    ]
    for heading in document.headings:
        assert document.text[heading.start :].startswith(heading.text)

    word = make_docx(tmp_path / "memo.docx", ["Body of the memo."], heading="Crew memo")
    memo = load_file(word)
    assert [(h.level, h.text) for h in memo.headings] == [(1, "Crew memo")]
    assert memo.text[memo.headings[0].start :].startswith("Crew memo")
    assert located("a\nTitle\nb\n", [(1, "Title"), (2, "missing")]) == [Heading(2, 1, "Title")]


GITHUB_README = (
    '<p align="center">\n  <a href="https://x.dev"><img src="logo.svg" alt="Logo"></a>\n</p>\n'
    "```bash\n# Install it first\npip install ferry\n```\n\n"
    "# Ferry [![Build](https://ci.example/badge.svg)](https://ci.example) [![PyPI][pypi]][1]\n\n"
    "## `book` Usage\n\nBook a crossing.\n\n"
    "## [1.2.0] - 2026-10-01\n\n"
    "## **Typer**, the *FastAPI* of CLIs\n\n"
    "## __init__.py and snake_case_names\n\n"
    "## [![Coverage](https://cov.example/badge.svg)](https://cov.example)\n\n"
    '<div id="x"> Semantics of limits </div>\n==========\n'
)


def test_markdown_headings_and_titles_are_plain_text() -> None:
    headings = markdown_headings(GITHUB_README)
    assert [h.text for h in headings] == [
        "Ferry",
        "book Usage",
        "1.2.0 - 2026-10-01",
        "Typer, the FastAPI of CLIs",
        "__init__.py and snake_case_names",
        "Semantics of limits",
    ]  # a heading of badges only is none; a code comment is no title
    assert markdown_title(GITHUB_README, headings) == "Ferry"
    opening_with_logo = GITHUB_README.split("```")[0] + "<em>Ferry, crossings made easy</em>\n"
    assert markdown_title(opening_with_logo, []) == "Ferry, crossings made easy"
    assert markdown_title("```\n# comment\n```\n", []) == ""
    badged = "Controls [![Build](https://b.svg)](https://ci) and [docs](https://d)"
    assert plain_heading(badged) == "Controls and docs"


MANUAL = (
    "=============\nFerry manual\n=============\n\n"
    "Issued by the operations office.\n\n"
    "Refuelling\n==========\n\n"
    "Fuel is taken on at Port Ederly only. The master signs the\nfuel docket.\n"
    "----------------------------------------\n\n"
    "Spills\n------\n\nReport a spill to the harbour master at once.\n\n"
    "    Indented code\n    -------------\n\n"
    "```\nnot a title\n-----------\n```\n\n"
    "A long line that is a paragraph, not a title\n---\n\n"
    "Daily checks\n============\n\nCheck the bilge alarms every morning.\n"
)


def test_plain_text_titles_are_underlined_paragraphs() -> None:
    headings = underlined_headings(MANUAL)
    assert [(h.level, h.text) for h in headings] == [
        (1, "Ferry manual"),  # over- and underlined: its own style, first seen, level 1
        (2, "Refuelling"),
        (3, "Spills"),
        (2, "Daily checks"),
    ]
    assert [MANUAL[h.start :].split("\n")[0] for h in headings] == [h.text for h in headings]
    # A rule under a paragraph, indented text, fenced code and short underlines are not titles.
    assert underlined_headings("Some text\nmore text\n-----\n") == []
    assert underlined_headings("A title that is rather long\n---\n") == []
    assert underlined_headings("") == []


def test_plain_text_files_keep_their_underlined_sections(tmp_path: Path) -> None:
    path = tmp_path / "manual.txt"
    path.write_text(MANUAL, encoding="utf-8")
    document = load_file(path)
    assert document.title == "Ferry manual"  # not its overline
    (chunk,) = chunk_document(document, "manual.txt", "k", 2000, 100)
    at = chunk.text.index("Report a spill")
    retrieved = RetrievedChunk(
        chunk.id,
        chunk.text,
        {"title": chunk.title, "sections": json.dumps(chunk.sections), "start": 0},
        1.0,
    )
    assert retrieved.heading_at(at) == "Ferry manual › Refuelling › Spills"
    assert retrieved.heading_at(chunk.text.index("Check the bilge")) == (
        "Ferry manual › Daily checks"
    )
    plain = tmp_path / "notes.txt"
    plain.write_text("Shopping list\n\nEggs and milk.\n", encoding="utf-8")
    assert load_file(plain).headings == [] and load_file(plain).title == "Shopping list"


def test_chunks_keep_their_sections(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(GUIDE, encoding="utf-8")
    document = load_file(path)
    whole = chunk_document(document, "guide.md", "k", 1000, 100)
    (chunk,) = whole
    assert chunk.section == ""  # it starts above the first section
    paths = [section for _, section in chunk.sections]
    assert paths == ["Refuelling", "Refuelling › Spills", "Daily checks"]
    assert all(chunk.text[at:].startswith("#") for at, _ in chunk.sections)

    small = chunk_document(document, "guide.md", "k", 120, 0)
    daily = next(c for c in small if c.text.startswith("Check the bilge"))
    assert daily.section == "Daily checks" and daily.sections == ()
    assert daily.search_text == "Fleet guide › Daily checks\n" + daily.text
    middle = next(c for c in small if "Report a spill" in c.text)
    assert middle.section == "Refuelling"  # a code comment is no heading
    assert [path for _, path in middle.sections] == ["Refuelling › Spills", "Daily checks"]

    retrieved = RetrievedChunk(
        chunk.id,
        chunk.text,
        {"title": chunk.title, "sections": json.dumps(chunk.sections), "start": 0},
        1.0,
    )
    at = chunk.text.index("Check the bilge")
    assert retrieved.heading_at(at) == "Fleet guide › Daily checks"
    assert retrieved.heading_at(0) == "Fleet guide"
    assert retrieved.search_text == search_text("Fleet guide", chunk.text)


def test_documents_without_sections_are_indexed_as_before(tmp_path: Path) -> None:
    path = tmp_path / "article.md"
    path.write_text("# A cappella\n\nSinging without instruments.\n", encoding="utf-8")
    (chunk,) = chunk_document(load_file(path), "article.md", "k", 1000, 100)
    assert chunk.section == "" and chunk.sections == ()
    assert chunk.search_text == "A cappella\n" + chunk.text


def test_a_renamed_heading_reaches_the_chunks_below_it(tmp_path: Path, settings) -> None:
    """Renaming a heading changes the section of chunks whose text did not change: they get new
    ids, so the keyword index (which follows ids) and the metadata read back are the new ones."""
    from rag.ingest import ingest
    from rag.retrieval import HybridSearcher

    docs = tmp_path / "docs"
    docs.mkdir()
    body = "The crossing takes two hours and leaves at 09:40 from the north pier. " * 3
    page = docs / "ferries.md"
    small = settings.with_overrides(chunk_size=200, chunk_overlap=0)
    searcher = HybridSearcher(small)
    for name in ("Caskhaven ferry", "Summerholm ferry"):
        page.write_text(f"# Ferry guide\n\n## {name}\n\n{body}\n", encoding="utf-8")
        assert ingest([docs], small).ok
        searcher.invalidate()
        chunks = searcher.search(f"{name} crossing", k=10).chunks
        below = [c for c in chunks if not c.text.startswith("#")]
        assert below and all(c.section == name for c in below)
        assert all(c.search_text.startswith(f"Ferry guide › {name}\n") for c in below)
    index = searcher.bm25()
    assert not index.top("Caskhaven", 10).indices.size  # the old heading's word is gone


def test_pdf_headings_are_its_larger_lines() -> None:
    """A PDF keeps no structure; its headings are the lines set larger than the body text."""
    from rag.sections import headings_by_size

    runs = [
        (16.0, "Safety "), (16.0, "procedures"), (10.0, "Body text of the document. " * 9),
        (12.0, "1. Weather limits"), (10.0, "Sailings stop above force 8."),
        (12.0, "Contents . . . . . . . 3"), (12.0, "A large paragraph. " * 12),
        (10.0, "More body text."),
    ]  # fmt: skip
    assert headings_by_size(runs) == [(1, "Safety procedures"), (2, "1. Weather limits")]
    assert headings_by_size([]) == []

    pdf = Path(__file__).resolve().parents[1] / "evals/corpora/handbook/safety_procedures.pdf"
    document = load_file(pdf)
    found = [(h.level, h.text) for h in document.headings]
    assert found[0] == (1, "Passenger Safety and Emergency Procedures")
    assert (2, "3. Weather limits") in found and len(found) == 12
    for heading in document.headings:
        assert document.text[heading.start :].startswith(heading.text)
    paths = section_paths(document.headings, document.title)
    assert paths[0][1] == "1. Roles and responsibilities"  # the title is read anyway
