"""LangChain's standard retriever tests (``langchain-tests``) on the hybrid retriever over a
real index of the seed corpus. Run by tests/test_retriever_standard.py in a child pytest: the
suite has async tests, and in the main run the session-scoped Playwright browser keeps an event
loop running in the main thread, where pytest-asyncio cannot start another."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from rag.config import Settings
from rag.retrieval import HybridRetriever, HybridSearcher


class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    searcher: HybridSearcher | None = None

    @pytest.fixture(autouse=True)
    def _searcher(self, request: pytest.FixtureRequest, seed_index: Settings) -> None:
        if request.cls.searcher is None:
            request.cls.searcher = HybridSearcher(seed_index)

    @property
    def retriever_constructor(self) -> type[HybridRetriever]:
        return HybridRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"searcher": self.searcher}

    @property
    def retriever_query_example(self) -> str:
        return "Which country supplies Russia with microelectronics?"
