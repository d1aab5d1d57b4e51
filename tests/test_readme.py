"""The README's "Use it from LangChain" code runs as written (a real process, the seed index,
the default backend)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from rag.config import Settings
from tests.conftest import rag_env

README = Path(__file__).resolve().parents[1] / "README.md"


def langchain_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use it from LangChain", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section holds one Python example"
    return blocks[0]


def test_readme_langchain_example_runs_as_written(seed_index: Settings, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(langchain_example(), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        env=rag_env(RAG_INDEX_DIR=str(seed_index.index_dir)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "90%" in out  # the answer, streamed sentences and the quotes all carry it
    assert "china_russia_military_supply.txt" in out
    assert out.count("[1]") >= 2
