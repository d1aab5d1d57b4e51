"""What a loader returns: a document's text with its title, pages, headings and code blocks,
or a LoaderError saying in one line why the file could not be read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rag.config import RagError
from rag.sections import Heading


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
