"""Web pages (HTML) and reStructuredText, which docutils renders to HTML first."""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.codeblocks import PRE_CLOSE, PRE_OPEN, take_pre_markers
from rag.loaders.document import LoadedDocument, LoaderError
from rag.loaders.text import decode_text
from rag.sections import located

_BLOCK_TAGS = (
    "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
    "header", "footer", "blockquote", "pre", "table", "ul", "ol", "dd", "dt", "hr", "main",
)  # fmt: skip


def _page_chrome(soup: Any) -> list[Any]:
    """A saved web page's navigation: ``<nav>`` and ``role="navigation"`` elements (menus,
    "previous / next topic"), HTML5's own meaning of them. Headers and footers stay: a site's
    footer can hold what a reader asks about (an address, "fares include VAT")."""
    return soup.find_all("nav") + soup.find_all(attrs={"role": "navigation"})


def load_html(path: Path) -> LoadedDocument:
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
    text = "".join(
        _code_lines(part) if part.startswith(PRE_OPEN) else _prose_lines(part)
        for part in re.split(f"({PRE_OPEN}.*?{PRE_CLOSE})", body.get_text(), flags=re.DOTALL)
    )
    text, code_blocks = take_pre_markers(re.sub(r"\n{3,}", "\n\n", text).strip())
    return LoadedDocument(
        path=path,
        text=text,
        title=title[:200],
        headings=located(text, found),
        code_blocks=code_blocks,
    )


def _prose_lines(text: str) -> str:
    """Text outside code: each line's runs of spaces made one, the line stripped."""
    return "\n".join(re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.split("\n"))


def _code_lines(block: str) -> str:
    """A marked code block's text with its indentation (Python's is its syntax), dedented as a
    whole, without trailing spaces or blank lines at either end."""
    code = block[len(PRE_OPEN) : -len(PRE_CLOSE)].replace("\u00a0", " ").expandtabs(4)
    lines = textwrap.dedent(code).split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return PRE_OPEN + "\n".join(line.rstrip() for line in lines) + PRE_CLOSE


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


def load_rst(path: Path) -> LoadedDocument:
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
    return _html_document(path, markup, title=_text_of(parts["title"]))


def _text_of(fragment: str) -> str:
    """The text of an HTML fragment (docutils' title of ``rpds.py`` is a <span>)."""
    from bs4 import BeautifulSoup

    return " ".join(BeautifulSoup(fragment, "lxml").get_text(" ").split()) if fragment else ""


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
