"""Web pages (HTML): text as a reader sees the page, with its headings and code blocks."""

from __future__ import annotations

import re
import textwrap
import warnings
from pathlib import Path
from typing import Any

from rag.codeblocks import PRE_CLOSE, PRE_OPEN, take_pre_markers
from rag.loaders.document import LoadedDocument
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
    return html_document(path, decode_text(path.read_bytes()))


def html_document(path: Path, markup: str, title: str = "") -> LoadedDocument:
    """The text of HTML ``markup`` (of the file ``path``) as a reader sees the page: without
    scripts, styles and menus, table rows on lines of their own, headings and code recorded.
    ``title``: the document's title where the caller knows it (else ``<title>``, ``<h1>``)."""
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():  # an XHTML page is read as HTML on purpose: no stderr noise
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(markup, "lxml")
    for tag in soup(["script", "style", "noscript", "template", "svg", "iframe", "object"]):
        tag.decompose()
    for tag in _page_chrome(soup):
        tag.decompose()
    headings = soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"])
    for anchor in (a for tag in headings for a in tag.find_all("a")):
        if not re.search(r"\w", anchor.get_text()):
            anchor.decompose()  # a permalink: "Installation¶" (Sphinx), "Assert#" (Node.js)
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
    # Each heading's text as the page's text will have it (words a tag apart are not spaced).
    found = [(int(tag.name[1]), " ".join(tag.get_text().split())) for tag in headings]
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
