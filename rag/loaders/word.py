"""Word (.docx) files (python-docx): paragraphs and table rows, heading styles as headings."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.loaders.document import LoadedDocument, LoaderError
from rag.loaders.text import title_from_text
from rag.sections import Heading


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


def load_docx(path: Path) -> LoadedDocument:
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
        title=(title or title_from_text(text, path.stem))[:200],
        headings=headings,
    )
