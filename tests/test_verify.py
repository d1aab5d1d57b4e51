"""The verifier's sentence vectors: ranking embeds a chunk's sentences only; the two-sentence
windows that checking generated sentences needs are embedded once, on first use."""

from __future__ import annotations

import numpy as np

from rag.answer.verify import Verifier
from rag.retrieval import RetrievedChunk

TEXT = "The ferry leaves from the north pier. It sails to Merren island. Tickets are sold on board."


class CountingEmbedder:
    """The real embedder, recording how many texts each ``encode`` call embeds."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.calls: list[int] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.embedder.encode(texts)


def test_windows_are_embedded_once_and_only_for_checking(embedder) -> None:
    counting = CountingEmbedder(embedder)
    verifier = Verifier(counting)  # type: ignore[arg-type]
    chunk = RetrievedChunk(chunk_id="c1", text=TEXT, metadata={"source": "ferry.txt"}, score=1.0)

    info = verifier.chunk_sentences(chunk)
    assert counting.calls == [3] and info.vectors.shape[0] == 3  # the sentences only
    assert verifier.chunk_sentences(chunk) is info and counting.calls == [3]  # cached

    claim = "The ferry leaves from the north pier and sails to Merren island."
    row = verifier.support([claim], [chunk])[0]
    assert counting.calls == [3, 1, 2]  # the claim, then the two two-sentence windows
    _, start, end = row[0]
    assert TEXT[start:end] == "The ferry leaves from the north pier. It sails to Merren island."
    every_window = embedder.encode([TEXT[a:b] for a, b in info.windows])
    assert np.allclose(info.window_vectors, every_window, atol=1e-5)

    verifier.support([claim], [chunk], single_only=True)
    assert counting.calls == [3, 1, 2, 1]  # windows not embedded again
