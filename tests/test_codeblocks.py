"""Code blocks: where loaders find them, and how chunking and answers read their lines."""

from __future__ import annotations

from pathlib import Path

from rag.answer.citations import code_piece
from rag.answer.verify import split_answer
from rag.chunking import chunk_document, sentence_spans
from rag.codeblocks import PRE_CLOSE, PRE_OPEN, clip, fenced_blocks, take_pre_markers
from rag.loaders import load_file

README = """# Ferrytool

Install it first:

```bash
pip install ferrytool
ferrytool init  # writes ferry.toml
```

Then start the timetable server with `ferrytool serve`.

~~~
```not a fence inside tildes
~~~

Inline ```code``` is not a fence.

- In a list:
    ```python
    import ferrytool
    ferrytool.sail()
    ```
"""


def _spans(text: str, blocks: list[tuple[int, int]]) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text, code=blocks)]


def test_fenced_blocks_cover_fences_and_lines() -> None:
    blocks = fenced_blocks(README)
    texts = [README[a:b] for a, b in blocks]
    assert texts == [
        "```bash\npip install ferrytool\nferrytool init  # writes ferry.toml\n```",
        "~~~\n```not a fence inside tildes\n~~~",
        "    ```python\n    import ferrytool\n    ferrytool.sail()\n    ```",
    ]


def test_unclosed_fence_runs_to_the_end() -> None:
    text = "Intro.\n\n```\nrun this\nand this\n"
    (block,) = fenced_blocks(text)
    assert text[slice(*block)] == "```\nrun this\nand this"


def test_code_lines_are_spans_of_their_own() -> None:
    """Without the blocks, a command line followed by one starting in lower case reads as a
    wrapped sentence; with them every line is its own span, the prose around unchanged."""
    joined = _spans(README, [])
    assert "```bash\npip install ferrytool\nferrytool init  # writes ferry.toml" in joined
    spans = _spans(README, fenced_blocks(README))
    assert spans[:6] == [
        "# Ferrytool",
        "Install it first:",
        "```bash",
        "pip install ferrytool",
        "ferrytool init  # writes ferry.toml",
        "```",
    ]
    assert "Then start the timetable server with `ferrytool serve`." in spans
    assert "import ferrytool" in spans and "ferrytool.sail()" in spans


def test_html_pre_markers_become_blocks() -> None:
    text, blocks = take_pre_markers(f"Run:\n{PRE_OPEN}make run\nmake test{PRE_CLOSE}\nDone.")
    assert text == "Run:\nmake run\nmake test\nDone."
    assert [text[a:b] for a, b in blocks] == ["make run\nmake test"]
    assert take_pre_markers(f"x{PRE_OPEN}{PRE_CLOSE}y") == ("xy", [])


def test_loaders_record_code_blocks(tmp_path: Path) -> None:
    md = tmp_path / "tool.md"
    md.write_text(README, encoding="utf-8")
    doc = load_file(md)
    assert doc.text == README and doc.code_blocks == fenced_blocks(README)
    page = tmp_path / "tool.html"
    page.write_text(
        "<html><body><h1>Tool</h1><p>Install it:</p>"
        "<pre><code>pip install tool\n  tool init\n</code></pre><p>That is all.</p></body></html>",
        encoding="utf-8",
    )
    html = load_file(page)
    assert PRE_OPEN not in html.text and PRE_CLOSE not in html.text
    # indentation kept (dedented as a block)
    assert [html.text[a:b] for a, b in html.code_blocks] == ["pip install tool\n  tool init"]
    assert "Install it:\n\npip install tool" in html.text


def test_chunks_keep_their_code_blocks(tmp_path: Path) -> None:
    """A chunk records the code inside it as offsets of its own text, also when it starts or
    ends inside a block; the chunk ids differ from those of the same text read as prose."""
    path = tmp_path / "long.md"
    lines = "\n".join(f"step_{n} --flag value_{n}" for n in range(60))
    path.write_text(f"# Long\n\nRun these:\n\n```\n{lines}\n```\n\nAfter the code.\n", "utf-8")
    doc = load_file(path)
    chunks = chunk_document(doc, "long.md", "key", chunk_size=300, chunk_overlap=50)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.code == clip(doc.code_blocks, chunk.start, chunk.end)
        for a, b in chunk.code:
            assert (
                doc.text[chunk.start + a : chunk.start + b] in doc.text[slice(*doc.code_blocks[0])]
            )
    middle = chunks[len(chunks) // 2]
    assert middle.code == ((0, len(middle.text)),)  # wholly inside the block
    # every chunk ends at a line's end: no command is cut in two
    assert all(doc.text[c.end : c.end + 1] in ("", "\n") for c in chunks)
    prose = chunk_document(
        type(doc)(path=doc.path, text=doc.text, title=doc.title),
        "long.md",
        "key",
        chunk_size=300,
        chunk_overlap=50,
    )
    assert {c.id for c in prose}.isdisjoint({c.id for c in chunks})


def test_code_in_answers() -> None:
    text = "Intro.\n    pip install tool\n    tool init --here\n"
    single = text.index("pip")
    assert code_piece(text, single, single + len("pip install tool"), "[1]") == (
        "`pip install tool` [1]"
    )
    end = text.index("--here") + len("--here")
    assert (
        code_piece(text, single, end, "[2]") == "```\npip install tool\ntool init --here\n```\n[2]"
    )
    assert split_answer("```\npip install tool\ntool init\n```\n[2] Then it runs. [1]") == [
        ("```\npip install tool\ntool init\n```", [2]),
        ("Then it runs.", [1]),
    ]
