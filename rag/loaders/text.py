"""Plain text and markdown files, and decoding any text file's bytes (encodings, binary files)."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from rag.codeblocks import fenced_blocks
from rag.loaders.document import LoadedDocument, LoaderError
from rag.sections import markdown_headings, markdown_title, underlined_headings

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
                return normalise_newlines(data.decode(encoding))
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
    return normalise_newlines(text)


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


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def title_from_text(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return fallback


def load_text(path: Path) -> LoadedDocument:
    text = decode_text(path.read_bytes())
    headings = underlined_headings(text)  # "Installation\n============", as manuals write them
    # The first heading is the title when nothing but its overline comes before it.
    first = headings[0] if headings and not re.search(r"\w", text[: headings[0].start]) else None
    title = first.text[:200] if first else title_from_text(text, path.stem)
    return LoadedDocument(
        path=path,
        text=text,
        title=title,
        headings=headings,
        code_blocks=fenced_blocks(text),  # a README.txt fences its code as markdown does
    )


# Front matter: YAML between "---" lines or TOML between "+++" lines, opening the file (Jekyll,
# Hugo, MkDocs and most static-site generators write their pages' titles there).
_FRONT_MATTER = re.compile(r"\A(---|\+\+\+)[ \t]*\n(.*?)\n\1[ \t]*(?:\n|\Z)", re.DOTALL)


def front_matter(text: str) -> tuple[dict, str]:
    """(the front matter's keys, the text after it); ({}, text) where there is none or it is
    not a table of keys (a page opening with a horizontal rule)."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text
    try:
        if match.group(1) == "---":
            import yaml

            keys = yaml.safe_load(match.group(2))
        else:
            import tomllib

            keys = tomllib.loads(match.group(2))
    except Exception:  # not YAML or TOML: the text as it is
        return {}, text
    if not isinstance(keys, dict):
        return {}, text
    return keys, text[match.end() :].lstrip("\n")


def load_markdown(path: Path) -> LoadedDocument:
    keys, text = front_matter(decode_text(path.read_bytes()))
    headings = markdown_headings(text)
    declared = keys.get("title")
    title = " ".join(declared.split()) if isinstance(declared, str) else ""
    return LoadedDocument(
        path=path,
        text=text,
        title=(title or markdown_title(text, headings))[:200] or path.stem,
        headings=headings,
        code_blocks=fenced_blocks(text),
    )
