"""The web UI's pure parts: escaping and rendering, upload names and storage, bind rules."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rag.answer import Answer, Citation, RetrievedInfo
from rag.config import ConfigError, load_settings
from rag.ui import render
from rag.ui.serve import check_bind, is_loopback
from rag.ui.uploads import UploadRefused, safe_upload_name, store_uploads

HOSTILE = (
    "<script>window.__pwned = 1</script><img src=x onerror=\"alert('x')\">"
    "**bold** _it_ [link](javascript:alert(1)) https://example.com $E=mc^2$ `code` "
    "# heading\n\n| a | b |\n--- \n&amp; &lt;b&gt; <!-- c --> \\escaped\x00\x07 end"
)
OUR_TAGS = {"div", "span", "sup", "b", "mark", "br", "ul", "li", "pre", "code"}


class _Collect(HTMLParser):
    """Tags, attributes and text of an HTML fragment, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag == "br":
            self.text.append("\n")

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:  # pragma: no cover - must not happen
        raise AssertionError(f"a comment got through: {data!r}")


def parse(fragment: str) -> _Collect:
    parser = _Collect()
    parser.feed(fragment)
    parser.close()
    return parser


def assert_only_our_markup(fragment: str) -> _Collect:
    parsed = parse(fragment)
    for tag, attrs in parsed.tags:
        assert tag in OUR_TAGS, (tag, fragment)
        assert all(name == "class" for name, _ in attrs), (tag, attrs)
    assert "\n" not in fragment and fragment.startswith("<div"), "one HTML block, one line"
    return parsed


def _answer(text: str, citations: list[Citation], refused: bool = False) -> Answer:
    return Answer(
        question=HOSTILE,
        standalone_question=HOSTILE,
        answer=text,
        refused=refused,
        citations=citations,
        retrieved=[RetrievedInfo(chunk_id="c1", source="<b>x</b>.txt", score=0.5, text=HOSTILE)],
        llm="extractive",
    )


def _citation(
    chunk_text: str, quote_start: int, quote_end: int, chunk_start: int = 100
) -> Citation:
    return Citation(
        n=1,
        source='<img src=x onerror="alert(1)">.txt',
        chunk_id="0123456789abcdef",
        page=3,
        start=chunk_start + quote_start,
        end=chunk_start + quote_end,
        quote=chunk_text[quote_start:quote_end],
        chunk_start=chunk_start,
        chunk_index=4,
        chunk_text=chunk_text,
        title="<script>t()</script>",
    )


def test_escape_keeps_text_exact_and_inert() -> None:
    escaped = render.escape(HOSTILE)
    bare = re.sub(r"&#\d+;", "", escaped.replace("<br>", ""))
    for dangerous in ("<", ">", "&", "*", "_", "[", "]", "(", ")", "$", "`", "|", "#", ":"):
        assert dangerous not in bare
    parsed = parse(escaped)
    assert [tag for tag, _ in parsed.tags] == ["br"] * HOSTILE.count("\n")
    shown = "".join(parsed.text)
    expected = HOSTILE.replace("\x00", "\N{REPLACEMENT CHARACTER}").replace(
        "\x07", "\N{REPLACEMENT CHARACTER}"
    )
    assert shown == expected


def test_answer_marks_citations_and_escapes_everything_else() -> None:
    chunk = "Intro. " + HOSTILE + " The figure was 90%. Tail."
    start = chunk.index("The figure")
    citation = _citation(chunk, start, start + len("The figure was 90%."))
    answer = _answer(HOSTILE + " The figure was 90%. [1]", [citation])
    fragment = render.answer_html(answer)
    parsed = assert_only_our_markup(fragment)
    assert ("sup", [("class", "rag-cite")]) in parsed.tags
    assert "[1]" in "".join(parsed.text)
    assert "<script>" in "".join(parsed.text)  # shown as text


def test_code_in_answers_is_shown_as_code_and_stays_inert() -> None:
    """A quoted command (`inline`) and a quoted block (fenced) are shown as code, their text
    exactly as written and inert, the fences themselves not shown."""
    chunk = "Run:\n```\n" + HOSTILE + "\n```\n"
    citation = _citation(chunk, 0, len(chunk) - 5)
    text = "Run: [1] `pip install <b>x</b>` [1]\n```\n" + HOSTILE + "\n```\n[1] Done. [1]"
    fragment = render.answer_html(_answer(text, [citation]))
    parsed = assert_only_our_markup(fragment)
    assert ("pre", [("class", "rag-code")]) in parsed.tags
    assert ("code", [("class", "rag-code")]) in parsed.tags
    body = fragment.split('<div class="rag-meta">')[0]  # the answer as shown (not Copy's text)
    shown = "".join(parse(body).text)
    assert "```" not in shown and "pip install <b>x</b>" in shown and "<script>" in shown
    assert shown.count("[1]") == 4


def test_sources_highlight_the_quote_inside_its_chunk() -> None:
    chunk = "Before <b>bold</b>.\nThe figure was 90%. After <script>x()</script>."
    start = chunk.index("The figure")
    citation = _citation(chunk, start, start + len("The figure was 90%."))
    fragment = render.sources_html([citation])
    parsed = assert_only_our_markup(fragment)
    text = "".join(parsed.text)
    assert '<img src=x onerror="alert(1)">.txt' in text
    assert "page 3" in text and "chunk 5" in text
    assert chunk in text
    marked = fragment.split("<mark>")[1].split("</mark>")[0]
    assert html.unescape(marked) == "The figure was 90%."
    assert fragment.count("<mark>") == 1


def test_sources_name_the_section_of_the_quote() -> None:
    chunk = "## Refuelling\n\nFuel is taken on at Port Ederly only."
    start = chunk.index("Fuel")
    citation = _citation(chunk, start, len(chunk)).model_copy(
        update={"section": "Fleet <b>guide</b> › Refuelling", "page": None}
    )
    shown = "".join(assert_only_our_markup(render.sources_html([citation])).text)
    assert "Fleet <b>guide</b> › Refuelling" in shown  # escaped, shown as text
    copied = render.copy_text(_answer("Fuel is taken on at Port Ederly only. [1]", [citation]))
    assert copied.endswith(
        f'[1] {citation.source} › Fleet <b>guide</b> › Refuelling: "{citation.quote}"'
    )


def test_long_context_is_trimmed_around_the_quote() -> None:
    chunk = "alpha " * 200 + "The quoted sentence here. " + "omega " * 200
    start = chunk.index("The quoted")
    citation = _citation(chunk, start, start + len("The quoted sentence here."))
    shown = "".join(parse(render.highlighted_chunk(citation)).text)
    assert shown.startswith("… alpha") and shown.endswith("omega …")
    assert "The quoted sentence here." in shown
    before, after = shown.split("The quoted sentence here.")
    assert len(before) <= render.CONTEXT_CHARS + 2 and len(after) <= render.CONTEXT_CHARS + 2


def test_quote_found_by_text_when_offsets_do_not_match() -> None:
    chunk = "One sentence here. The quoted sentence. Another one."
    citation = _citation(chunk, 0, len("One sentence here."))
    citation.quote = "The quoted sentence."
    fragment = render.highlighted_chunk(citation)
    assert html.unescape(fragment.split("<mark>")[1].split("</mark>")[0]) == citation.quote


def test_refusal_error_pending_and_passages_are_distinct_and_inert() -> None:
    refused = _answer("The documents don't say <b>x</b>", [], refused=True)
    refusal = render.answer_html(refused)
    assert "rag-refusal" in refusal and "Not in the documents" in refusal
    assert "rag-answer" not in refusal
    for fragment in (
        refusal,
        render.error_html("index unavailable: <script>x</script>"),
        render.pending_html(),
        render.pending_html("writing"),
        render.partial_html(HOSTILE + " [1]"),
        render.passages_html(refused.retrieved),
        render.user_html(HOSTILE),
    ):
        assert_only_our_markup(fragment)
    assert "<script>x</script>" in "".join(parse(render.error_html("<script>x</script>")).text)
    assert "checked" in render.pending_html("writing")
    partial = render.partial_html("China supplied 90% [1].")
    assert 'class="rag-cite">[1]' in partial and "rag-answer" not in partial


def test_follow_up_shows_how_it_was_understood() -> None:
    answer = _answer("An answer. [1]", [])
    answer.question, answer.standalone_question = "Who supplies them?", "Chips? Who supplies them?"
    fragment = render.answer_html(answer)
    assert "understood as" in fragment
    assert "Chips" in html.unescape(fragment)
    answer.standalone_question = answer.question
    assert "understood as" not in render.answer_html(answer)


def test_stats_and_ingest_reports_escape_names() -> None:
    stats = {
        "collection": "documents",
        "documents": 2,
        "chunks": 7,
        "sources": ["<script>a()</script>.txt", "ok.md"],
        "embedding_model": "m",
        "store": "embedded",
    }
    parsed = assert_only_our_markup(render.stats_html(stats, "local"))
    assert "<script>a()</script>.txt" in "".join(parsed.text)
    assert "The index is empty" in render.stats_html({**stats, "sources": []}, "local")
    assert "rag-error" in render.stats_html(None, "local", error="index unavailable")
    report = {
        "added": 1,
        "updated": 0,
        "unchanged": 2,
        "deleted": 0,
        "failed": [{"path": "<b>bad</b>.pdf", "error": "cannot parse <x>"}],
        "chunks_written": 3,
        "seconds": 0.5,
    }
    fragment = render.ingest_html(report, [("evil<img>.exe", "file type .exe")], ["a.txt"])
    parsed = assert_only_our_markup(fragment)
    text = "".join(parsed.text)
    assert "1 added" in text and "1 failed" in text
    assert "<b>bad</b>.pdf: cannot parse <x>" in text and "evil<img>.exe" in text
    assert "nothing indexed" in render.ingest_html(None, [("x.exe", "no")])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\win.ini.txt", "win.ini.txt"),
        ("/etc/cron.d/job.md", "job.md"),
        ("C:\\Users\\x\\notes.txt", "notes.txt"),
        ("nul\x00byte.txt", "nulbyte.txt"),
        ("evil.txt\x00.pdf", "evil.txt.pdf"),
        ("CON.txt", "_CON.txt"),
        ("con.txt", "_con.txt"),
        ("LPT1.md", "_LPT1.md"),
        ("aux.tar.txt", "_aux.tar.txt"),
        (".hidden.txt", "hidden.txt"),
        ("...txt", "txt"),
        ("Report.PDF", "Report.pdf"),
        ("a\nb\rc\td.txt", "abcd.txt"),
        ('<img src=x onerror="alert(1)">.txt', "_img src_x onerror__alert(1)__.txt"),
        ("résumé 2024.docx", "résumé 2024.docx"),
        ("x" * 400 + ".txt", "x" * 176 + ".txt"),
    ],
)
def test_safe_upload_name(name: str, expected: str) -> None:
    if expected == "txt":  # "...txt" has no name left before its extension
        with pytest.raises(UploadRefused):
            safe_upload_name(name)
        return
    assert safe_upload_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [".", "..", "../", "/", "", "\x00", "....", "evil.exe", "archive.zip", "noext", "a.txt/"],
)
def test_unsafe_or_unsupported_names_are_refused(name: str) -> None:
    with pytest.raises(UploadRefused):
        safe_upload_name(name)


def test_store_uploads_keeps_everything_inside_the_folder(tmp_path: Path) -> None:
    source = tmp_path / "incoming"
    source.mkdir()
    files, names = [], []
    hostile = [
        "../../outside.txt",
        "/tmp/absolute.txt",
        "nul\x00.txt",
        "CON.txt",
        ".",
        "..",
        "ok.md",
        "big.txt",
        "empty.txt",
        "program.exe",
    ]
    for i, name in enumerate(hostile):
        path = source / f"f{i}"
        size = 3_000_000 if name == "big.txt" else (0 if name == "empty.txt" else 20)
        path.write_bytes(b"x" * size)
        files.append(path)
        names.append(name)
    upload_dir = tmp_path / "data" / "uploads"
    result = store_uploads(files, upload_dir, max_mb=1, names=names)
    stored = sorted(path.name for path in result.stored)
    assert stored == ["_CON.txt", "_nul.txt", "absolute.txt", "ok.md", "outside.txt"]
    refused = dict(result.refused)
    assert set(refused) == {".", "..", "big.txt", "empty.txt", "program.exe"}
    assert "too large" in refused["big.txt"] and "empty" in refused["empty.txt"]
    assert "not accepted" in refused["program.exe"]
    assert sorted(p.name for p in upload_dir.iterdir()) == stored  # no .part leftovers
    for path in result.stored:
        assert path.parent == upload_dir.resolve()
    assert not (tmp_path / "outside.txt").exists() and not Path("/tmp/absolute.txt").exists()


def test_settle_keeps_what_was_indexed(tmp_path: Path) -> None:
    """A failed new upload is removed; a failed new version gives the old file back."""
    upload_dir = tmp_path / "uploads"
    incoming = tmp_path / "in"
    incoming.mkdir()
    for name, body in (("old.txt", "version 1"), ("fresh.txt", "fresh")):
        (incoming / name).write_text(body)
    first = store_uploads([incoming / "old.txt"], upload_dir, 1)
    assert first.settle([]) == [upload_dir.resolve() / "old.txt"]

    (incoming / "old.txt").write_text("version 2, broken")
    (incoming / "bad.txt").write_text("will fail")
    second = store_uploads(
        [incoming / "old.txt", incoming / "bad.txt", incoming / "fresh.txt"], upload_dir, 1
    )
    assert (upload_dir / "old.txt").read_text(encoding="utf-8") == "version 2, broken"
    kept = second.settle([upload_dir / "old.txt", upload_dir / "bad.txt"])
    assert [path.name for path in kept] == ["fresh.txt"]
    assert (upload_dir / "old.txt").read_text(encoding="utf-8") == "version 1"
    assert sorted(path.name for path in upload_dir.iterdir()) == ["fresh.txt", "old.txt"]

    third = store_uploads([incoming / "fresh.txt", incoming / "fresh.txt"], upload_dir, 1)
    assert len(third.stored) == 1 and "also named fresh.txt" in third.refused[0][1]
    third.settle([])
    assert sorted(path.name for path in upload_dir.iterdir()) == ["fresh.txt", "old.txt"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_bind_rules() -> None:
    assert check_bind(load_settings(host="127.0.0.1")) is None
    with pytest.raises(ConfigError, match=r"refusing to serve on 0\.0\.0\.0.*RAG_AUTH.*--insecure"):
        check_bind(load_settings(host="0.0.0.0"))
    assert check_bind(load_settings(host="0.0.0.0", auth="me:secret")) is None
    warning = check_bind(load_settings(host="0.0.0.0"), insecure=True)
    assert warning and "without a login" in warning
