"""Storing uploaded files safely under ``settings.upload_dir``.

A client chooses the file name, so it is treated as hostile: only its last path component is
kept (``/`` and ``\\`` both count), NUL and control characters are dropped, leading dots and
trailing dots or spaces are removed (no hidden files, no ``.``/``..``), Windows device names
(``CON``, ``NUL``, ``COM1`` …) get a prefix, the length is capped, and the extension must be one
the loaders read. The final path is checked to lie directly inside the upload folder.
"""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rag.loaders import SUPPORTED_EXTENSIONS

MAX_NAME_BYTES = 180
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"]
    + [f"{kind}{n}" for kind in ("COM", "LPT") for n in "0123456789¹²³"]
)
_UNSAFE = re.compile(r"[^\w .()+,@-]", re.UNICODE)


class UploadRefused(ValueError):
    """The file cannot be stored; the message says why (shown to the user)."""


def safe_upload_name(name: str) -> str:
    """A harmless file name for an uploaded file, or UploadRefused.

    >>> safe_upload_name("../../etc/passwd.txt")
    'passwd.txt'
    >>> safe_upload_name("CON.txt")
    '_CON.txt'
    """
    raw = unicodedata.normalize("NFC", str(name or ""))
    raw = raw.replace("\x00", "")
    base = re.split(r"[/\\]", raw)[-1]
    base = "".join(char for char in base if unicodedata.category(char)[0] != "C")
    base = _UNSAFE.sub("_", base)
    base = re.sub(r"\s+", " ", base).strip(" .")
    base = base.lstrip(".-~ ")
    if not base:
        raise UploadRefused("the file name is empty once unsafe characters are removed")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    extension = f".{suffix.lower()}" if suffix else ""
    if extension not in SUPPORTED_EXTENSIONS:
        allowed = ", ".join(SUPPORTED_EXTENSIONS)
        shown = extension or "(none)"
        raise UploadRefused(f"file type {shown} is not accepted; allowed: {allowed}")
    stem = stem.rstrip(" .") or "upload"
    if stem.split(".")[0].upper() in _RESERVED:
        stem = f"_{stem}"
    while len((stem + extension).encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem + extension


@dataclass
class StoredUploads:
    """Where each accepted upload now lives, and why the others were refused."""

    stored: list[Path] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    previous: dict[Path, Path] = field(default_factory=dict)  # replaced file → its backup

    def settle(self, failed: Iterable[Path]) -> list[Path]:
        """After ingesting ``stored``: drop the files that failed (a replaced file gets its
        previous version back, so what was indexed stays on disk) and the backups of the rest.
        Returns the files that stay."""
        failed_paths = {Path(path).resolve() for path in failed}
        kept: list[Path] = []
        for path in self.stored:
            backup = self.previous.get(path)
            if path.resolve() in failed_paths:
                if backup is not None:
                    os.replace(backup, path)
                else:
                    path.unlink(missing_ok=True)
            else:
                if backup is not None:
                    backup.unlink(missing_ok=True)
                kept.append(path)
        self.previous.clear()
        return kept


def store_uploads(
    files: Iterable[str | os.PathLike[str]],
    upload_dir: Path,
    max_mb: float,
    names: Iterable[str | None] | None = None,
) -> StoredUploads:
    """Copy uploaded temp files into ``upload_dir`` under safe names (replacing a file of the
    same name: uploading a new version updates it; call :meth:`StoredUploads.settle` after
    ingesting). ``names``: the client's file names when they differ from the temp files'."""
    result = StoredUploads()
    upload_dir.mkdir(parents=True, exist_ok=True)
    folder = upload_dir.resolve()
    max_bytes = int(max_mb * 1e6)
    paths = [Path(os.fspath(item)) for item in files]
    given = list(names) if names is not None else [None] * len(paths)
    for path, name in zip(paths, given + [None] * (len(paths) - len(given)), strict=False):
        shown = name or path.name
        try:
            target_name = safe_upload_name(shown)
            size = path.stat().st_size
            if size > max_bytes:
                raise UploadRefused(
                    f"file too large ({size / 1e6:.1f} MB > {max_mb:g} MB limit; "
                    "raise RAG_MAX_UPLOAD_MB to allow it)"
                )
            if size == 0:
                raise UploadRefused("the file is empty")
            target = folder / target_name
            if target.parent != folder:  # defence in depth: never outside the folder
                raise UploadRefused("unsafe file name")
            if target in result.stored:
                raise UploadRefused(f"another file in this upload is also named {target_name}")
            partial = folder / f".{target_name}.part"
            try:
                shutil.copyfile(path, partial)
                if target.exists():  # a new version: keep the old one until it is indexed
                    backup = folder / f".{target_name}.prev"
                    os.replace(target, backup)
                    result.previous[target] = backup
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
            result.stored.append(target)
        except UploadRefused as error:
            result.refused.append((shown, str(error)))
        except OSError as error:
            result.refused.append((shown, f"cannot store the file: {error.strerror or error}"))
    return result
