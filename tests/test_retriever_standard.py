"""The hybrid retriever passes LangChain's standard retriever tests (in a child pytest; see
tests/standard/retriever_standard.py for why)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STANDARD = Path(__file__).parent / "standard" / "retriever_standard.py"


def test_langchain_standard_retriever_tests() -> None:
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(STANDARD)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parent.parent,
    )
    assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-2000:]
    assert " passed" in child.stdout and "failed" not in child.stdout, child.stdout[-2000:]
