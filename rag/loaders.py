"""Loaders: turn a file on disk into plain text (with page spans for PDFs).

Each loader raises :class:`LoaderError` with a one-line, human reason; callers report it per file
and carry on with the others.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import math
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.codeblocks import PRE_CLOSE, PRE_OPEN, fenced_blocks, take_pre_markers
from rag.config import RagError
from rag.sections import (
    Heading,
    headings_by_size,
    located,
    markdown_headings,
    underlined_headings,
)

SUPPORTED_EXTENSIONS = (
    ".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".docx",
)  # fmt: skip


class LoaderError(RagError):
    """A file could not be turned into text; ``str(error)`` is the reason, one line."""


@dataclass(frozen=True)
class PageSpan:
    """Where one page of a paginated document lies in the extracted text (1-based number)."""

    number: int
    start: int
    end: int


@dataclass
class LoadedDocument:
    """The text of one file and what we know about it."""

    path: Path
    text: str
    title: str
    pages: list[PageSpan] = field(default_factory=list)
    headings: list[Heading] = field(default_factory=list)  # in document order (rag.sections)
    code_blocks: list[tuple[int, int]] = field(default_factory=list)  # (rag.codeblocks)

    def page_at(self, offset: int) -> int | None:
        """1-based page number holding ``offset``, or None for documents without pages."""
        for page in self.pages:
            if page.start <= offset < page.end:
                return page.number
        return self.pages[-1].number if self.pages else None


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (never the whole file at once)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_EXTENSIONS


def discover_files(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """All files below ``root`` (or ``root`` itself): (supported files, skipped with reasons).

    Directory symlinks are followed once; loops and repeats are skipped, never walked forever.
    """
    if root.is_file():
        if is_supported(root):
            return [root], []
        return [], [(root, f"unsupported file type {root.suffix or '(none)'!r}")]
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen_dirs: set[tuple[int, int]] = set()
    for directory, subdirs, files in os.walk(root, followlinks=True, onerror=None):
        try:
            info = os.stat(directory)
        except OSError:
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen_dirs:
            subdirs[:] = []
            skipped.append((Path(directory), "directory already visited (symlink loop)"))
            continue
        seen_dirs.add(key)
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(directory) / name
            if is_supported(path):
                found.append(path)
            else:
                skipped.append((path, f"unsupported file type {path.suffix or '(none)'!r}"))
    return found, skipped


def load_file(path: Path, max_bytes: int | None = None) -> LoadedDocument:
    """Load one supported file. Raises LoaderError with the reason when it can't."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise LoaderError(f"cannot read file: {error.strerror or error}") from None
    if not path.is_file():
        raise LoaderError("not a regular file")
    if max_bytes is not None and size > max_bytes:
        raise LoaderError(
            f"file too large ({size / 1e6:.1f} MB > {max_bytes / 1e6:.0f} MB limit; "
            "raise RAG_MAX_FILE_MB to allow it)"
        )
    if size == 0:
        raise LoaderError("empty file")
    if not os.access(path, os.R_OK):
        raise LoaderError("permission denied")
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoaderError(f"unsupported file type {path.suffix or '(none)'!r}")
    try:
        document = loader(path)
    except LoaderError:
        raise
    except PermissionError:
        raise LoaderError("permission denied") from None
    except OSError as error:
        raise LoaderError(f"cannot read file: {error.strerror or error}") from None
    except MemoryError:
        raise LoaderError("out of memory while reading the file") from None
    except Exception as error:  # a parser's own failure: report it, never crash the ingest
        raise LoaderError(f"cannot parse file: {type(error).__name__}: {error}") from None
    if not document.text.strip():
        raise LoaderError("no text found in the file")
    return document


# Plain text -------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes) -> str:
    """Decode bytes of a text file: BOM, then UTF-8, then a detected legacy encoding.

    Raises LoaderError for binary data or text in no recognisable encoding.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _normalise_newlines(data.decode(encoding))
            except UnicodeDecodeError:
                raise LoaderError(f"invalid {encoding} text despite its byte-order mark") from None
    if b"\x00" in data[:8192]:
        raise LoaderError("binary file (contains NUL bytes), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = _decode_legacy(data)
    if _looks_binary(text):
        raise LoaderError("binary file (mostly control characters), not text")
    return _normalise_newlines(text)


def _decode_legacy(data: bytes) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1 << 20]).best()
    if best is None or best.encoding is None:
        raise LoaderError("cannot decode text: not UTF-8 and no other encoding fits")
    try:
        return data.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        raise LoaderError(f"cannot decode text as {best.encoding}") from None


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f]")  # control characters but \t \n \v \f \r


def _looks_binary(text: str) -> bool:
    sample = text[:8192]
    if not sample:
        return False
    return len(_CONTROL.findall(sample)) / len(sample) > 0.05


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _title_from_text(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return fallback


def _load_text(path: Path) -> LoadedDocument:
    text = decode_text(path.read_bytes())
    headings = underlined_headings(text)  # "Installation\n============", as manuals write them
    # The first heading is the title when nothing but its overline comes before it.
    first = headings[0] if headings and not re.search(r"\w", text[: headings[0].start]) else None
    title = first.text[:200] if first else _title_from_text(text, path.stem)
    return LoadedDocument(
        path=path,
        text=text,
        title=title,
        headings=headings,
        code_blocks=fenced_blocks(text),  # a README.txt fences its code as markdown does
    )


def _load_markdown(path: Path) -> LoadedDocument:
    text = decode_text(path.read_bytes())
    heading = re.search(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE)
    title = heading.group(1).strip()[:200] if heading else _title_from_text(text, path.stem)
    return LoadedDocument(
        path=path,
        text=text,
        title=title,
        headings=markdown_headings(text),
        code_blocks=fenced_blocks(text),
    )


# HTML --------------------------------------------------------------------------------------

_BLOCK_TAGS = (
    "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
    "header", "footer", "blockquote", "pre", "table", "ul", "ol", "dd", "dt", "hr", "main",
)  # fmt: skip


def _page_chrome(soup: Any) -> list[Any]:
    """A saved web page's navigation: ``<nav>`` and ``role="navigation"`` elements (menus,
    "previous / next topic"), HTML5's own meaning of them. Headers and footers stay: a site's
    footer can hold what a reader asks about (an address, "fares include VAT")."""
    return soup.find_all("nav") + soup.find_all(attrs={"role": "navigation"})


def _load_html(path: Path) -> LoadedDocument:
    return _html_document(path, decode_text(path.read_bytes()))


def _html_document(path: Path, markup: str, title: str = "") -> LoadedDocument:
    """The text of HTML ``markup`` (of the file ``path``) as a reader sees the page: without
    scripts, styles and menus, table rows on lines of their own, headings and code recorded.
    ``title``: the document's title where the caller knows it (else ``<title>``, ``<h1>``)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "lxml")
    for tag in soup(["script", "style", "noscript", "template", "svg", "iframe", "object"]):
        tag.decompose()
    for tag in _page_chrome(soup):
        tag.decompose()
    title_tag = soup.find("title")
    heading = soup.find("h1")
    title = (
        title
        or (title_tag.get_text(" ", strip=True) if title_tag else "")
        or (heading.get_text(" ", strip=True) if heading else "")
        or path.stem
    )
    if title_tag:
        title_tag.decompose()
    found = [
        (int(tag.name[1]), tag.get_text(" ", strip=True))
        for tag in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"])
    ]
    for cell in soup.find_all(["td", "th"]):  # a cell's paragraphs stay on its row's line
        for inner in cell.find_all(["p", "div", "br"]):
            inner.insert_after(" ")
            inner.unwrap()
    for row in soup.find_all("tr"):  # table cells: "a | b | c" on one line per row
        for between in row.find_all(string=True, recursive=False):
            between.replace_with(" ")  # the markup's line breaks between cells
        for cell in row.find_all(["td", "th"], recursive=False)[1:]:
            cell.insert_before(" | ")
    for pre in soup.find_all("pre"):  # code: marked, to record where it is (rag.codeblocks)
        pre.insert(0, PRE_OPEN)
        pre.append(PRE_CLOSE)
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    body = soup.body or soup
    text = body.get_text()
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    text = "\n".join(lines)
    text = re.sub(f"{PRE_OPEN}\n+", PRE_OPEN, re.sub(f"\n+{PRE_CLOSE}", PRE_CLOSE, text))
    text, code_blocks = take_pre_markers(re.sub(r"\n{3,}", "\n\n", text).strip())
    return LoadedDocument(
        path=path,
        text=text,
        title=title[:200],
        headings=located(text, found),
        code_blocks=code_blocks,
    )


# reStructuredText --------------------------------------------------------------------------

_RST_SETTINGS = {
    "report_level": 5,  # no "System Message" text in the document; nothing halts the parse
    "halt_level": 5,
    "file_insertion_enabled": False,  # `.. include:: /etc/passwd` reads nothing
    "raw_enabled": False,
    "_disable_config": True,  # no docutils.conf from the user's machine
    "syntax_highlight": "none",
    "embed_stylesheet": False,
    "stylesheet_path": "",
}
# A Sphinx cross-reference role docutils does not know (":func:`run`", ":class:`Thing <x.Thing>`",
# ":meth:`~a.b.c`"), left as its raw text: what a reader sees of it is the name.
_SPHINX_ROLE = re.compile(r":[\w.+-]+(?::[\w.+-]+)?:`([~!]?)([^`]*?)\s*(?:&lt;[^`]*&gt;)?`")
_PRE = re.compile(r"(<pre\b.*?</pre>)", re.DOTALL)


def _load_rst(path: Path) -> LoadedDocument:
    """A reStructuredText file, rendered to HTML by docutils (the reference parser, which PyPI
    renders READMEs with) and read as HTML: sections as headings, literal and code blocks as
    code, tables as rows, links as their text. Sphinx's ``code-block`` and ``sourcecode`` are
    read as code whatever their options, and its cross-reference roles as their names."""
    from docutils.core import publish_parts

    _register_sphinx_code_blocks()
    source = decode_text(path.read_bytes())
    try:
        parts = publish_parts(source, writer="html5", settings_overrides=_RST_SETTINGS)
    except Exception as error:  # docutils raises its own errors, and others on odd input
        raise LoaderError(f"cannot parse reStructuredText ({type(error).__name__})") from None
    markup = "".join(
        piece if piece.startswith("<pre") else _SPHINX_ROLE.sub(_role_text, piece)
        for piece in _PRE.split(parts["html_body"])
    )
    return _html_document(path, markup, title=" ".join(parts["title"].split()))


def _role_text(match: re.Match) -> str:
    text = match.group(2).strip()
    return text.rsplit(".", 1)[-1] if match.group(1) == "~" else text


@functools.cache
def _register_sphinx_code_blocks() -> None:
    """Sphinx's ``code-block`` / ``sourcecode`` directives (and docutils' own ``code``) as
    literal blocks that accept any option (``:linenos:``, ``:emphasize-lines:``), where docutils
    alone drops a block whose options it does not know, code and all."""
    from docutils import nodes
    from docutils.parsers.rst import Directive, directives

    class AnyOption(dict):
        def __contains__(self, key: object) -> bool:
            return True

        def __getitem__(self, key: str) -> Callable[[str | None], str]:
            return directives.unchanged

    class CodeBlock(Directive):
        has_content = True
        optional_arguments = 1
        final_argument_whitespace = True
        option_spec = AnyOption()

        def run(self) -> list:
            code = "\n".join(self.content)
            return [nodes.literal_block(code, code)]

    for name in ("code-block", "sourcecode", "code"):
        directives.register_directive(name, CodeBlock)


# PDF ---------------------------------------------------------------------------------------


def _load_pdf(path: Path) -> LoadedDocument:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    with open(path, "rb") as handle:
        if not handle.read(1024).lstrip().startswith(b"%PDF"):
            raise LoaderError("not a PDF file (no %PDF header)")
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            try:
                reader.decrypt("")
                _ = len(reader.pages)
            except Exception:
                raise LoaderError("encrypted PDF (password required)") from None
        parts: list[str] = []
        pages: list[PageSpan] = []
        runs: list[tuple[float, str]] = []  # (font size, text) for headings_by_size
        offset = 0
        page_texts = [
            _normalise_newlines(page.extract_text(visitor_text=_sized_runs(runs)) or "").strip()
            for page in reader.pages
        ]
        compounds = hyphenated_compounds(page_texts)
        for number, page_text in enumerate(page_texts, start=1):
            page_text = join_line_break_hyphens(page_text, compounds).translate(PDF_CHARACTERS)
            if not page_text:
                continue
            if parts:
                parts.append("\n\n")
                offset += 2
            pages.append(PageSpan(number, offset, offset + len(page_text)))
            parts.append(page_text)
            offset += len(page_text)
        metadata_title = (reader.metadata or {}).get("/Title") if reader.metadata else None
    except LoaderError:
        raise
    except FileNotDecryptedError:
        raise LoaderError("encrypted PDF (password required)") from None
    except PdfReadError as error:
        raise LoaderError(f"corrupt or truncated PDF: {error}") from None
    text = "".join(parts)
    if not text.strip():
        raise LoaderError("PDF has no extractable text (scanned images need OCR, not supported)")
    title = str(metadata_title).strip() if metadata_title else _title_from_text(text, path.stem)
    headings = located(text, headings_by_size(runs))
    return LoadedDocument(path=path, text=text, title=title[:200], pages=pages, headings=headings)


# Typographic ligatures some PDF fonts map to their own code points ("ﬁ" for "fi"), and soft
# hyphens (invisible, they split a word for search).
PDF_CHARACTERS = str.maketrans(
    {
        "\u00ad": "",
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
    }
)
_HYPHEN_BREAK = re.compile(r"([ \t]+)?(?<![\w-])([^\W\d_]+)([-\u2010\u00ad])\n([^\W\d_]+)")
_COMPOUND = re.compile(r"[^\W\d_]+-[^\W\d_]+")


def hyphenated_compounds(texts: list[str]) -> set[str]:
    """The hyphenated words written whole on one line somewhere in ``texts``, lowercased."""
    return {match.group(0).lower() for text in texts for match in _COMPOUND.finditer(text)}


def join_line_break_hyphens(text: str, compounds: set[str]) -> str:
    """Words a PDF hyphenated across a line break, whole again: "the man-\nagement of" becomes
    "the\nmanagement of" (the word moves to the line it ends on). A compound written hyphenated
    elsewhere in the document (in ``compounds``: "well-known") keeps its hyphen; a soft hyphen
    (U+00AD) never does."""

    def join(match: re.Match[str]) -> str:
        space, first, mark, second = match.groups()
        kept = mark != "\u00ad" and f"{first}-{second}".lower() in compounds  # soft: never kept
        hyphen = "-" if kept else ""
        return ("\n" if space else "") + f"{first}{hyphen}{second}"

    return _HYPHEN_BREAK.sub(join, text)


def _sized_runs(runs: list[tuple[float, str]]) -> Callable[..., None]:
    """A pypdf text visitor appending (font size as set on the page, text) to ``runs``."""

    def visit(text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
        if text.strip():
            try:
                scale = math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3])
                runs.append((round(float(size) * scale, 1), text))
            except (TypeError, ValueError, IndexError):
                pass  # an odd text matrix: the run counts as no heading

    return visit


# DOCX --------------------------------------------------------------------------------------


def _docx_heading_level(paragraph: Any) -> int | None:
    """0 for Word's Title style, N for "Heading N", None for other paragraphs."""
    style = (paragraph.style.name or "") if paragraph.style is not None else ""
    if style == "Title":
        return 0
    level = re.fullmatch(r"Heading (\d)", style)
    return int(level.group(1)) if level else None


def _iter_docx_blocks(document: object) -> Iterator[tuple[str, int | None]]:
    """(text, heading level or None) of each paragraph, and of each table row ("a | b")."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for block in document.iter_inner_content():  # type: ignore[attr-defined]
        if isinstance(block, Paragraph):
            yield block.text, _docx_heading_level(block)
        elif isinstance(block, Table):
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:
                    value = cell.text.strip()
                    if value and (not cells or cells[-1] != value):
                        cells.append(value)
                if cells:
                    yield " | ".join(cells), None


def _load_docx(path: Path) -> LoadedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    if not zipfile.is_zipfile(path):
        raise LoaderError("not a valid .docx file (not a zip archive)")
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, zipfile.BadZipFile):
        raise LoaderError("not a valid .docx file (no Word document inside the archive)") from None
    parts: list[str] = []
    headings: list[Heading] = []
    offset = 0
    for block, level in _iter_docx_blocks(document):
        block = block.strip()
        if not block:
            continue
        if parts:
            offset += 2  # the "\n\n" between blocks
        if level is not None:
            headings.append(Heading(offset, level, " ".join(block.split())))
        parts.append(block)
        offset += len(block)
    text = "\n\n".join(parts)
    title = (document.core_properties.title or "").strip()
    if not title:
        for paragraph in document.paragraphs:
            style = (paragraph.style.name or "") if paragraph.style is not None else ""
            if paragraph.text.strip() and (style.startswith("Heading") or style == "Title"):
                title = paragraph.text.strip()
                break
    return LoadedDocument(
        path=path,
        text=text,
        title=(title or _title_from_text(text, path.stem))[:200],
        headings=headings,
    )


_LOADERS: dict[str, Callable[[Path], LoadedDocument]] = {
    ".txt": _load_text,
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".rst": _load_rst,
    ".html": _load_html,
    ".htm": _load_html,
    ".pdf": _load_pdf,
    ".docx": _load_docx,
}
