"""Fixtures for the real-browser tests: one `rag serve` (default LLM) on a copy of the seed
index, and Debian's headless Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_ui_support import CHROMIUM_ARGS, copy_index, require_browser, running_ui

from rag.config import Settings


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    chromium = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="session")
def browser_ui(browser: Any, seed_index: Settings, tmp_path_factory: pytest.TempPathFactory):
    """The app as `rag serve` starts it, with the local LLM (its drafts stream), on a private
    index copy."""
    index = copy_index(seed_index.index_dir, tmp_path_factory.mktemp("ui-browser") / "index")
    with running_ui(index, env={"RAG_LLM": "local"}) as process:
        yield process


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: RAG_TEST_SCREENSHOTS if set (to look at them), else a temp dir."""
    folder = Path(os.environ.get("RAG_TEST_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
