"""PDF files (pypdf): text per page, headings by type size, line-break hyphens undone."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.loaders.document import LoadedDocument, LoaderError, PageSpan
from rag.loaders.text import normalise_newlines, title_from_text
from rag.sections import headings_by_size, located


def load_pdf(path: Path) -> LoadedDocument:
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
            normalise_newlines(page.extract_text(visitor_text=_sized_runs(runs)) or "").strip()
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
    title = str(metadata_title).strip() if metadata_title else title_from_text(text, path.stem)
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
