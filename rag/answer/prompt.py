"""The answer prompt: a LangChain ``ChatPromptTemplate`` over numbered sources.

A replacement prompt (``RAG(prompt=...)``) takes the same two variables: ``{context}``, the
numbered sources, and ``{question}``, the standalone question.
"""

from __future__ import annotations

from langchain_core.prompts import ChatPromptTemplate

from rag.retrieval import RetrievedChunk

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources below. Write one to three short "
    "sentences. After each sentence, cite the source it comes from, like [1]. If the sources "
    "do not answer the question, reply exactly: I don't know."
)

ANSWER_PROMPT = ChatPromptTemplate.from_messages(
    [("system", SYSTEM_PROMPT), ("human", "Sources:\n{context}\n\nQuestion: {question}")]
)


def numbered_context(chunks: list[RetrievedChunk], excerpts: list[str] | None = None) -> str:
    """The sources as the model sees them: ``[n] title`` (with the section the chunk starts
    in) then the (whole or excerpted) text."""
    texts = excerpts if excerpts is not None else [chunk.text for chunk in chunks]
    return "\n\n".join(
        f"[{n}] {_headed(chunk, text)}"
        for n, (chunk, text) in enumerate(zip(chunks, texts, strict=True), start=1)
        if text
    )


def _headed(chunk: RetrievedChunk, text: str) -> str:
    """``text`` after its chunk's title and section, unless it starts with them already."""
    heading = chunk.heading_at(0)
    return f"{heading}\n{text}" if chunk.title and not text.startswith(heading) else text
