"""Loaders: turn a file on disk into plain text (with page spans for PDFs).

Each loader raises :class:`LoaderError` with a one-line, human reason; callers report it per file
and carry on with the others.

Formats, one module each: ``text`` (plain text, markdown; decoding), ``web`` (HTML), ``rst``
(reStructuredText, through ``web``), ``pdf``, ``word`` (.docx); ``document`` holds what they return.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from rag.loaders.document import LoadedDocument, LoaderError, PageSpan
from rag.loaders.pdf import PDF_CHARACTERS, hyphenated_compounds, join_line_break_hyphens, load_pdf
from rag.loaders.rst import load_rst
from rag.loaders.text import decode_text, load_markdown, load_text
from rag.loaders.web import load_html
from rag.loaders.word import load_docx

__all__ = [
    "PDF_CHARACTERS",
    "SUPPORTED_EXTENSIONS",
    "LoadedDocument",
    "LoaderError",
    "PageSpan",
    "decode_text",
    "discover_files",
    "file_sha256",
    "hyphenated_compounds",
    "is_supported",
    "join_line_break_hyphens",
    "load_file",
]

SUPPORTED_EXTENSIONS = (
    ".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".docx",
)  # fmt: skip


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


_LOADERS: dict[str, Callable[[Path], LoadedDocument]] = {
    ".txt": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".rst": load_rst,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}
