"""Loading what answering needs once, before the first question: the encoders, the keyword
index and a chat model's weights."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rag.config import RagError
from rag.embeddings import Embedder
from rag.onnx_encoders import import_runtime
from rag.reader import Reader
from rag.retrieval import HybridSearcher


class Loader:
    """Loads each part once per pipeline (thread-safe) and says how long it took."""

    def __init__(self, embedder: Embedder, reader: Reader, searcher: HybridSearcher):
        self.embedder = embedder
        self.reader = reader
        self.searcher = searcher
        self._loaded: set[str] = set()
        self._lock = threading.Lock()

    def load(self, label: str, chat_model: Callable[[], Any]) -> float:
        """Load the encoders, the keyword index and, under ``label``, the chat model that
        ``chat_model()`` returns (llama.cpp weights load on first access). Returns the seconds
        spent (0.0 when all was loaded already)."""
        began = time.perf_counter()
        with self._lock:
            if self._can_overlap():
                # The store (importing chromadb, opening it, reading the keyword index) loads
                # on a thread while this one starts the encoders (ONNX Runtime or OpenVINO),
                # which run mostly outside the GIL: a cold start takes the longer of the two,
                # not their sum. What the encoders import is imported first, here: two
                # threads importing one module at once can see it half-initialised.
                import_runtime((self.embedder.backend, self.reader.backend))
                with ThreadPoolExecutor(1, "rag-load") as pool:
                    keyword_index = pool.submit(self._load_keyword_index)
                    self._load_encoders()
                    keyword_index.result()
            else:
                self._load_encoders()
                self._load_keyword_index()
            if label not in self._loaded:
                _ = getattr(chat_model(), "llama", None)
                self._loaded.add(label)
        return time.perf_counter() - began

    def _can_overlap(self) -> bool:
        """Both loads still to do, and the encoders on ONNX Runtime or OpenVINO with their
        exports made (loading them then imports nothing more; exporting imports torch)."""
        return (
            "encoders" not in self._loaded
            and "keyword index" not in self._loaded
            and self.embedder.backend != "torch"
            and self.reader.backend != "torch"
            and not self.embedder.needs_export
            and not self.reader.needs_export
        )

    def _load_encoders(self) -> None:
        if "encoders" not in self._loaded:
            self.embedder.encode_query("load")
            self.reader.score("load", [("", "Load.")])
            self._loaded.add("encoders")

    def _load_keyword_index(self) -> None:
        if "keyword index" in self._loaded:
            return
        try:
            self.searcher.bm25()
            self._loaded.add("keyword index")
        except RagError:  # a store that is down: the search reports it
            pass
