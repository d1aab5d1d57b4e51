"""Loaders on real files: every supported type, encodings, and each bad-input kind."""

from __future__ import annotations

import codecs
import os
import random
import zipfile
from pathlib import Path

import pytest

from rag.loaders import (
    LoaderError,
    decode_text,
    discover_files,
    file_sha256,
    is_supported,
    load_file,
)

FRENCH = (
    "Le comité a décidé, après une longue réunion à Genève, que la société éditerait "
    "un rapport détaillé sur les résultats économiques de l'année. Les élèves étaient "
    "très intéressés par les conclusions présentées à la conférence de presse."
)


# Supported types ----------------------------------------------------------------------------


def test_txt_utf8(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("First line title\r\nSecond line.\rThird line — ünïcödé ✓.\n", "utf-8")
    document = load_file(path)
    assert document.text == "First line title\nSecond line.\nThird line — ünïcödé ✓.\n"
    assert document.title == "First line title"
    assert document.pages == []
    assert document.page_at(5) is None


def test_markdown_title_from_first_heading(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text("Intro text before.\n\n# The Real Title #\n\nBody **bold**.\n", "utf-8")
    document = load_file(path)
    assert document.title == "The Real Title"
    assert "Body **bold**." in document.text


@pytest.mark.parametrize(
    ("opening", "title"),
    [
        ("---\ntitle: Installing Ferry\nnav_order: 2\ntags: [setup]\n---\n", "Installing Ferry"),
        ('+++\ntitle = "Installing Ferry"\nweight = 2\n+++\n', "Installing Ferry"),
        ("---\nlayout: page\n---\n", "Install"),  # no title key: the first heading
    ],
)
def test_markdown_front_matter_gives_the_title_and_is_not_text(
    tmp_path: Path, opening: str, title: str
) -> None:
    path = tmp_path / "install.md"
    path.write_text(opening + "\n# Install\n\nRun `pip install ferry`.\n", encoding="utf-8")
    document = load_file(path)
    assert document.title == title
    assert document.text == "# Install\n\nRun `pip install ferry`.\n"
    assert [h.text for h in document.headings] == ["Install"]


def test_markdown_opening_with_a_rule_keeps_its_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    text = "---\nJust a note between rules.\n---\n\nMore text.\n"
    path.write_text(text, encoding="utf-8")
    assert load_file(path).text == text


@pytest.mark.parametrize("suffix", [".html", ".htm"])
def test_html_drops_scripts_and_keeps_blocks(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"page{suffix}"
    path.write_text(
        "<html><head><title>Page &amp; Title</title><style>p{color:red}</style>"
        "<script>alert('x')</script></head><body><h1>Heading</h1>"
        "<p>First   paragraph&nbsp;here.</p><div>Second block</div>"
        "<ul><li>item one</li><li>item two</li></ul><noscript>noscript text</noscript>"
        "</body></html>",
        "utf-8",
    )
    document = load_file(path)
    assert document.title == "Page & Title"
    assert "alert" not in document.text and "color:red" not in document.text
    assert "noscript text" not in document.text
    lines = document.text.splitlines()
    assert "First paragraph here." in lines
    assert "Second block" in lines
    assert "item one" in lines and "item two" in lines
    assert "Page & Title" not in document.text  # the <title> is metadata, not body text


def test_html_code_keeps_its_indentation(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><body><p>Loop   over\n   ports:</p>"
        "<pre>\n    for port in ports:\n        book(port)\n\n</pre></body></html>",
        encoding="utf-8",
    )
    document = load_file(path)
    assert document.text == "Loop over\nports:\n\nfor port in ports:\n    book(port)"
    ((start, end),) = document.code_blocks
    assert document.text[start:end] == "for port in ports:\n    book(port)"


def test_html_headings_with_permalinks_are_found(tmp_path: Path, recwarn) -> None:
    """Generated docs put a permalink in every heading ("Installation¶" in Sphinx, "Assert#" in
    Node.js's docs): the heading is still found (it used to be lost, and each lost heading's
    search scanned the rest of the page), and the symbol is not text. An XHTML page is read
    without a parser warning on stderr."""
    path = tmp_path / "docs.html"
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<html><body>'
        '<h1>Ferry<a class="headerlink" href="#ferry">¶</a></h1><p>Books crossings.</p>'
        '<h2>Install<span><a class="mark" href="#install">#</a></span></h2><p>Use pip.</p>'
        '<h2>The <code>book</code> call<a href="#book">§</a></h2><p>Books one.</p>'
        "</body></html>",
        encoding="utf-8",
    )
    document = load_file(path)
    assert [(h.level, h.text) for h in document.headings] == [
        (1, "Ferry"),
        (2, "Install"),
        (2, "The book call"),
    ]
    assert "¶" not in document.text and "#" not in document.text and "§" not in document.text
    assert document.title == "Ferry"  # no <title>: the first heading, without its permalink
    assert not [w for w in recwarn if "XML" in type(w.message).__name__]


def test_html_navigation_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "docs.html"
    path.write_text(
        "<html><body><header><a href='/'>Acme Docs</a> Search Sign in</header>"
        "<nav><ul><li>Home</li><li>Pricing</li></ul></nav>"
        "<div role='navigation'>Previous topic Next topic</div>"
        "<main><article><header><h1>Refunds</h1><p>Updated May 2026</p></header>"
        "<p>Refunds are paid within 14 days.</p><footer>Written by the billing team.</footer>"
        "</article></main><footer>Copyright Acme 2026 Privacy Terms</footer></body></html>",
        "utf-8",
    )
    document = load_file(path)
    for chrome in ("Pricing", "Previous topic"):
        assert chrome not in document.text
    for content in ("Refunds", "Updated May 2026", "paid within 14 days", "Copyright Acme"):
        assert content in document.text
    assert document.title == "Refunds"


def test_html_title_falls_back_to_h1(tmp_path: Path) -> None:
    path = tmp_path / "x.html"
    path.write_text("<body><h1>Only Heading</h1><p>text</p></body>", "utf-8")
    assert load_file(path).title == "Only Heading"


RST = """\
=========
Ferrytool
=========

Ferrytool books crossings. See :func:`ferrytool.book` and
:class:`Booking <ferrytool.Booking>`, or :meth:`~ferrytool.Booking.cancel`.

Installation
============

Install it with pip::

    pip install ferrytool

.. code-block:: python
   :linenos:

   import ferrytool
   for port in ferrytool.ports():
       ferrytool.book(port)

Fares
-----

+----------+-------+
| Ticket   | Price |
+==========+=======+
| Single   | 4.20  |
+----------+-------+

.. note:: Fares include VAT.

.. include:: /etc/passwd

.. raw:: html

   <script>alert(1)</script>

.. autofunction:: ferrytool.book
"""


def test_restructuredtext_is_read_as_its_reader_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "README.rst"
    path.write_text(RST, encoding="utf-8")
    document = load_file(path)
    assert document.title == "Ferrytool"
    assert [(h.level, h.text) for h in document.headings] == [
        (1, "Ferrytool"),
        (2, "Installation"),
        (3, "Fares"),
    ]
    text = document.text
    # Sphinx roles read as names, links as their text; no underlines or markup left.
    assert "See ferrytool.book and\nBooking, or cancel." in text
    assert "====" not in text and "::" not in text and ":func:" not in text
    # Literal blocks and code-block directives (with options docutils alone rejects) are code.
    codes = [text[a:b] for a, b in document.code_blocks]
    assert codes == [  # indentation kept: Python's is its syntax
        "pip install ferrytool",
        "import ferrytool\nfor port in ferrytool.ports():\n    ferrytool.book(port)",
    ]
    assert "Ticket | Price" in text and "Single | 4.20" in text  # a table row per line
    assert "Fares include VAT." in text
    # Nothing is read from elsewhere on the machine, and raw HTML is not passed through.
    assert "root:" not in text and "alert" not in text and "passwd" not in text


def test_sphinx_version_notes_are_read_as_sphinx_renders_them(tmp_path: Path) -> None:
    """docutils drops directives it does not know, text and all; Sphinx's version notes and
    "see also" say what users ask about ("since when is it deprecated?")."""
    path = tmp_path / "api.rst"
    path.write_text(
        "API\n===\n\n.. deprecated:: 2.0\n   Use ``start`` instead.\n\n"
        ".. versionadded:: 1.4 The *fast* mode.\n\n.. versionchanged:: 1.5\n\n"
        ".. seealso::\n\n   The ``tool.extra`` module.\n\n.. autofunction:: tool.run\n",
        encoding="utf-8",
    )
    assert load_file(path).text == (
        "API\n\nDeprecated since version 2.0: Use start instead.\n\n"
        "New in version 1.4: The fast mode.\n\nChanged in version 1.5.\n\n"
        "See also: The tool.extra module."
    )


def test_restructuredtext_without_title_uses_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.rst"
    path.write_text("Just a paragraph with *emphasis* and ``code``.\n", encoding="utf-8")
    document = load_file(path)
    assert document.title == "notes"
    path.write_text("``rpds.py``\n===========\n\nPersistent data structures.\n", encoding="utf-8")
    assert load_file(path).title == "rpds.py"  # the title's markup is not part of it
    path.write_text("Just a paragraph with *emphasis* and ``code``.\n", encoding="utf-8")
    document = load_file(path)
    assert document.text == "Just a paragraph with emphasis and code."


def test_pdf_pages_are_one_based_and_blank_pages_counted(tmp_path: Path, make_pdf) -> None:
    path = make_pdf(
        tmp_path / "report.pdf",
        ["Alpha page one.\nSecond line on one.", "", "Gamma (third) page."],
        title="Quarterly Report",
    )
    document = load_file(path)
    assert document.title == "Quarterly Report"
    assert [page.number for page in document.pages] == [1, 3]
    for page in document.pages:
        assert document.text[page.start : page.end].strip()
    one, three = document.pages
    assert "Alpha page one." in document.text[one.start : one.end]
    assert "Gamma (third) page." in document.text[three.start : three.end]
    assert document.page_at(one.start) == 1
    assert document.page_at(three.end - 1) == 3


def test_pdf_without_title_uses_first_line(tmp_path: Path, make_pdf) -> None:
    document = load_file(make_pdf(tmp_path / "a.pdf", ["Heading Line\nbody"]))
    assert document.title == "Heading Line"


def test_pdf_words_hyphenated_at_line_ends_are_whole_again(tmp_path: Path, make_pdf) -> None:
    lines = [
        "Key Handling",
        "The library covers the man-",
        "agement of keys and their rota-",
        "tion, as a well-known scheme",
        "does. A well-",
        "known trick: ISO-",
        "8601 dates.",
    ]
    document = load_file(make_pdf(tmp_path / "keys.pdf", ["\n".join(lines)]))
    assert "management of keys" in document.text
    assert "rotation, as" in document.text
    assert "well-known trick" in document.text  # written hyphenated elsewhere: kept
    assert "ISO-\n8601" in document.text  # not two words: left alone
    assert "\n\n" not in document.text  # no paragraph break made up


def test_ligatures_and_line_break_hyphens_unit() -> None:
    from rag.loaders import PDF_CHARACTERS, hyphenated_compounds, join_line_break_hyphens

    assert (
        "\ufb01rst e\ufb00ort in\u00advisible".translate(PDF_CHARACTERS) == "first effort invisible"
    )
    assert join_line_break_hyphens("soft\u00ad\nhyphen and hard\u2010\nhyphen", set()) == (
        "softhyphen and\nhardhyphen"
    )
    text = "an e-mail and an e-\nmail\nthe en-\ncoding, then\nline con-\ntinued here"
    assert join_line_break_hyphens(text, hyphenated_compounds([text])) == (
        "an e-mail and an\ne-mail\nthe\nencoding, then\nline\ncontinued here"
    )


def test_docx_paragraphs_tables_and_title(tmp_path: Path, make_docx) -> None:
    path = make_docx(
        tmp_path / "memo.docx",
        ["First paragraph of the memo.", "", "Second paragraph."],
        table=[["Country", "Share"], ["China", "90%"], ["Iran", "5%"]],
        heading="Memo Heading",
    )
    document = load_file(path)
    assert document.title == "Memo Heading"
    assert "First paragraph of the memo." in document.text
    assert "Second paragraph." in document.text
    assert "Country | Share" in document.text
    assert "China | 90%" in document.text and "Iran | 5%" in document.text
    # the table comes after the paragraphs, in document order
    assert document.text.index("Second paragraph.") < document.text.index("China | 90%")


def test_docx_core_title_wins(tmp_path: Path, make_docx) -> None:
    path = make_docx(tmp_path / "t.docx", ["Body."], heading="Heading", title="Core Title")
    assert load_file(path).title == "Core Title"


def test_docx_merged_cells_not_repeated(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 2))
    merged.text = "Merged header"
    for c, value in enumerate(["a", "b", "c"]):
        table.cell(1, c).text = value
    path = tmp_path / "merged.docx"
    document.save(str(path))
    text = load_file(path).text
    assert text.count("Merged header") == 1
    assert "a | b | c" in text


# Encodings ----------------------------------------------------------------------------------


def test_latin1_text_decoded(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(FRENCH.encode("latin-1"))
    assert load_file(path).text == FRENCH


def test_cp1252_text_decoded(tmp_path: Path) -> None:
    text = "Prices rose by 5 € in “the last quarter” – said the café’s owner. " * 3
    path = tmp_path / "cp1252.txt"
    path.write_bytes(text.encode("cp1252"))
    assert load_file(path).text == text


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig", "utf-32"])
def test_bom_text_decoded(tmp_path: Path, codec: str) -> None:
    text = "Grüße aus Köln — 東京 and ελληνικά.\nSecond line."
    boms = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}
    data = boms.get(codec, b"") + text.encode(codec)
    path = tmp_path / f"{codec}.txt"
    path.write_bytes(data)
    assert load_file(path).text == text


def test_utf16_html_and_markdown(tmp_path: Path) -> None:
    html = tmp_path / "u16.html"
    html.write_bytes("<html><body><p>Ünïcode paragraph.</p></body></html>".encode("utf-16"))
    assert load_file(html).text == "Ünïcode paragraph."
    md = tmp_path / "u16.md"
    md.write_bytes("# Título\n\nCuerpo.".encode("utf-16"))
    assert load_file(md).title == "Título"


def test_decode_text_rejects_binary() -> None:
    with pytest.raises(LoaderError, match="binary"):
        decode_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))


# Bad input ------------------------------------------------------------------------------------


def _bad(path: Path, **kwargs) -> str:
    with pytest.raises(LoaderError) as caught:
        load_file(path, **kwargs)
    message = str(caught.value)
    assert message and "\n" not in message
    return message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    assert "empty" in _bad(path)


def test_whitespace_only_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.md"
    path.write_text(" \n\n\t \n")
    assert "no text" in _bad(path)


def test_binary_renamed_txt_with_nul(tmp_path: Path) -> None:
    path = tmp_path / "program.txt"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 40)
    assert "binary" in _bad(path)


def test_random_bytes_renamed_txt(tmp_path: Path) -> None:
    rng = random.Random(7)
    data = bytes(rng.randrange(1, 256) for _ in range(20_000))  # no NUL bytes at all
    path = tmp_path / "noise.txt"
    path.write_bytes(data)
    message = _bad(path)
    assert "binary" in message or "decode" in message


def test_truncated_pdf(tmp_path: Path, make_pdf) -> None:
    good = make_pdf(tmp_path / "good.pdf", ["Page text. " * 40] * 3)
    data = good.read_bytes()
    for fraction in (0.2, 0.5, 0.9, 0.98):
        path = tmp_path / f"truncated-{fraction}.pdf"
        path.write_bytes(data[: int(len(data) * fraction)])
        assert "corrupt" in _bad(path) or "truncated" in _bad(path)


def test_garbage_pdf(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pdf"
    path.write_bytes(b"%PDF-1.7\n" + os.urandom(4000))
    _bad(path)
    fake = tmp_path / "fake.pdf"
    fake.write_text("this is plain text, not a PDF")
    assert "not a PDF" in _bad(fake)


def test_encrypted_pdf(tmp_path: Path, make_pdf) -> None:
    path = make_pdf(tmp_path / "secret.pdf", ["Secret text."], user_password="pw")
    assert "encrypted" in _bad(path)


def test_pdf_with_owner_password_only_is_readable(tmp_path: Path, make_pdf) -> None:
    path = make_pdf(tmp_path / "open.pdf", ["Readable text."], owner_password="owner")
    assert load_file(path).text == "Readable text."


def test_pdf_without_text(tmp_path: Path, make_pdf) -> None:
    path = make_pdf(tmp_path / "scan.pdf", ["", ""])
    assert "no extractable text" in _bad(path)


def test_zip_renamed_docx(tmp_path: Path) -> None:
    path = tmp_path / "archive.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    assert "docx" in _bad(path)


def test_text_renamed_docx(tmp_path: Path) -> None:
    path = tmp_path / "plain.docx"
    path.write_text("just text")
    assert "not a zip" in _bad(path)


def test_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    with open(path, "wb") as handle:
        handle.truncate(3_000_000)  # sparse: nothing is written or read
    message = _bad(path, max_bytes=1_000_000)
    assert "too large" in message and "RAG_MAX_FILE_MB" in message


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not block reads (see test_ingest)")
    path = tmp_path / "secret.txt"
    path.write_text("hidden")
    path.chmod(0)
    try:
        assert "permission" in _bad(path)
    finally:
        path.chmod(0o644)


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read" in _bad(tmp_path / "gone.txt")


# Discovery --------------------------------------------------------------------------------------


def test_discover_recurses_sorted_skips_hidden_and_unknown(tmp_path: Path) -> None:
    for name in ["b.txt", "a.md", "sub/c.html", "sub/deeper/d.PDF", "img.png", ".hidden.txt"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "e.txt").write_text("x")
    found, skipped = discover_files(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in found]
    assert names == ["a.md", "b.txt", "sub/c.html", "sub/deeper/d.PDF"]
    assert [(p.name, "unsupported" in why) for p, why in skipped] == [("img.png", True)]
    assert is_supported(Path("X.DOCX")) and not is_supported(Path("x.doc"))


def test_discover_single_file(tmp_path: Path) -> None:
    good = tmp_path / "a.txt"
    good.write_text("x")
    assert discover_files(good) == ([good], [])
    bad = tmp_path / "a.exe"
    bad.write_text("x")
    found, skipped = discover_files(bad)
    assert found == [] and skipped[0][0] == bad


def test_discover_symlink_loop_terminates(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "doc.txt").write_text("x")
    os.symlink(root / "a", root / "a" / "b" / "loop")  # a/b/loop -> a
    os.symlink(root, root / "a" / "up")  # a/up -> root
    found, skipped = discover_files(root)
    assert [p.relative_to(root).as_posix() for p in found] == ["a/b/doc.txt"]
    assert any("symlink loop" in why for _, why in skipped)


def test_discover_follows_directory_symlink_once(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    (real / "x.txt").write_text("x")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(real, root / "linked")
    found, _ = discover_files(root)
    assert [p.relative_to(root).as_posix() for p in found] == ["linked/x.txt"]


def test_file_sha256_streams(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "data.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    path.write_bytes(data)
    assert file_sha256(path, chunk_bytes=1 << 16) == hashlib.sha256(data).hexdigest()
