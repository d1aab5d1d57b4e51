"""reStructuredText files: rendered to HTML by docutils, then read as a web page (``web``)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

from rag.loaders.document import LoadedDocument, LoaderError
from rag.loaders.text import decode_text
from rag.loaders.web import html_document

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

    _register_sphinx_directives()
    source = decode_text(path.read_bytes())
    try:
        parts = publish_parts(source, writer="html5", settings_overrides=_RST_SETTINGS)
    except Exception as error:  # docutils raises its own errors, and others on odd input
        raise LoaderError(f"cannot parse reStructuredText ({type(error).__name__})") from None
    markup = "".join(
        piece if piece.startswith("<pre") else _SPHINX_ROLE.sub(_role_text, piece)
        for piece in _PRE.split(parts["html_body"])
    )
    return html_document(path, markup, title=_text_of(parts["title"]))


def _text_of(fragment: str) -> str:
    """The text of an HTML fragment (docutils' title of ``rpds.py`` is a <span>)."""
    from bs4 import BeautifulSoup

    return " ".join(BeautifulSoup(fragment, "lxml").get_text(" ").split()) if fragment else ""


def _role_text(match: re.Match) -> str:
    text = match.group(2).strip()
    return text.rsplit(".", 1)[-1] if match.group(1) == "~" else text


# Sphinx's paragraph-level notes, read as the sentence Sphinx renders them as.
_VERSION_NOTES = {
    "versionadded": "New in version",
    "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version",
    "versionremoved": "Removed in version",
}


@functools.cache
def _register_sphinx_directives() -> None:
    """Sphinx directives docutils does not know, whose text a reader asks about, registered
    with docutils (unknown directives are dropped, text and all):

    - ``code-block`` / ``sourcecode`` (and docutils' own ``code``): literal blocks that accept
      any option (``:linenos:``, ``:emphasize-lines:``);
    - ``versionadded``, ``versionchanged``, ``deprecated``, ``versionremoved``: "Deprecated since
      version 2.0: use ``b`` instead." as a paragraph, as Sphinx renders them;
    - ``seealso``: "See also: ..."."""
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

    class Note(Directive):
        """A version note or "see also": its label, then its text and content."""

        has_content = True
        optional_arguments = 2
        final_argument_whitespace = True
        option_spec = AnyOption()

        def run(self) -> list:
            if self.name in _VERSION_NOTES:
                label = " ".join([_VERSION_NOTES[self.name], *self.arguments[:1]])
                rest = self.arguments[1:]
            else:
                label, rest = "See also", self.arguments
            body = nodes.container()
            if self.content:
                self.state.nested_parse(self.content, self.content_offset, body)
            text = " ".join(rest)
            first = body.children[0] if body.children else None
            if isinstance(first, nodes.paragraph) and not text:
                first.insert(0, nodes.Text(f"{label}: "))
            elif text:  # the text on the directive's line, its inline markup read
                inline, _ = self.state.inline_text(text, self.lineno)
                body.insert(0, nodes.paragraph("", f"{label}: ", *inline))
            else:
                body.insert(0, nodes.paragraph(text=f"{label}."))
            return [body]

    for name in ("code-block", "sourcecode", "code"):
        directives.register_directive(name, CodeBlock)
    for name in (*_VERSION_NOTES, "seealso"):
        directives.register_directive(name, Note)
