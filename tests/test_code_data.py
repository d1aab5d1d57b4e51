"""The reader's how-to pairs with code answers (rag.train.code_data): which documents may be
used, which questions the templates write, and that pairs survive a save and load."""

from __future__ import annotations

import random
from pathlib import Path

from rag.loaders import load_file
from rag.train.code_data import (
    _held_out,
    evaluation_packages,
    load_pairs,
    questions_of,
    save_pairs,
)
from rag.train.reader_data import Pair

README = """# Widget

Widget makes widgets.

## Installation

```console
$ pip install widget
```

## Reading a settings file

Widget reads TOML.

```python
from widget import Config
settings = Config.read("widget.toml")
```

To export a widget as JSON, call its method:

```python
widget.to_json()
```

```python
# Create a client for the local server
client = widget.Client("127.0.0.1")
# returns the server's version
client.version()
```
"""


def _questions(tmp_path: Path) -> list[dict]:
    path = tmp_path / "widget.md"
    path.write_text(README, encoding="utf-8")
    loaded = load_file(path)
    return questions_of(
        loaded.text, loaded.code_blocks, loaded.headings, "widget", random.Random(0)
    )


def test_every_evaluation_package_is_held_out() -> None:
    excluded = evaluation_packages()
    # one of each corpus: README validation, README test, RST validation, RST test
    assert {"cloudpickle", "uvicorn", "aiohttp", "wrapt"} <= excluded
    assert _held_out("python3-requests", excluded)
    assert _held_out("Markdown_It.Py", {"markdown-it-py"})
    assert not _held_out("jinja2", excluded)


def test_no_corpora_to_hold_out_is_an_error(tmp_path) -> None:
    import pytest

    with pytest.raises(FileNotFoundError, match="no evaluation corpora"):
        evaluation_packages(tmp_path)


def test_templates_ask_what_the_code_answers(tmp_path) -> None:
    by_kind = {q["kind"]: q for q in _questions(tmp_path)}
    assert by_kind["code_install"]["answer"] == "$ pip install widget"
    assert "install" in by_kind["code_install"]["question"]
    assert "widget" in by_kind["code_install"]["question"]
    heading = by_kind["code_heading"]
    assert "read a settings file" in heading["question"]
    assert heading["answer"] == 'settings = Config.read("widget.toml")'  # not the import line
    lead_in = by_kind["code_lead_in"]
    assert "export a widget as JSON" in lead_in["question"]
    assert lead_in["answer"] == "widget.to_json()"
    comment = by_kind["code_comment"]
    assert "create a client for the local server" in comment["question"]
    assert comment["answer"] == 'client = widget.Client("127.0.0.1")'


def test_answers_are_located_in_the_loaded_text(tmp_path) -> None:
    path = tmp_path / "widget.md"
    path.write_text(README, encoding="utf-8")
    text = load_file(path).text
    for question in _questions(tmp_path):
        assert text[question["at"] : question["at"] + len(question["answer"])] == question["answer"]
        assert question["question"].endswith("?")


def test_remarks_ask_nothing(tmp_path) -> None:
    asked = " ".join(q["question"] for q in _questions(tmp_path))
    assert "version" not in asked  # "# returns the server's version" is a remark, not a step


def test_pairs_round_trip(tmp_path) -> None:
    pairs = [
        Pair(
            "How do I install widget?",
            "Widget › Installation",
            "$ pip install widget",
            (0, 20),
            "code_install",
        ),
        Pair("How do I install widget?", "Other", "Other text.", None, "code_negative"),
    ]
    save_pairs(pairs, tmp_path / "pairs.jsonl.gz")
    assert load_pairs(tmp_path / "pairs.jsonl.gz") == pairs
