"""How-to training pairs for the reader from public package documentation.

SQuAD holds no code, so a reader trained on it alone scores a README's ``pip install x`` or
``enc = tiktoken.encoding_for_model("gpt-4o")`` far below the prose around it, and answers
"how do I ...?" with the sentence that talks about the command instead of the command. These
pairs show it code answers, from documents no evaluation set holds:

- sources: the markdown and reStructuredText long descriptions of the Python distributions
  installed where this runs, and the ``.md``/``.rst`` files under ``/usr/share/doc``, less every
  package an evaluation corpus holds (``evals/corpora/*/LICENSES``) and less duplicates;
- questions, by templates (no model writes them): a comment line in a code block followed by
  a code line ("# make a random UUID" → "How do I make a random UUID?", answered by the
  line after it); a lead-in "To do X, ...:" before a code block ("How do I do X?", answered
  by the block's first line); a section about installing ("How do I install NAME?", answered
  by its install command);
- pairs, from the real pipeline: the documents are ingested into a scratch index, and for each
  question the units the reader reads there (retrieval with k = 4, ``RAG.rank_sentences``) are
  taken with the titles answering gives them. Units holding the answer line are positives (the
  span is the line); the three the shipped reader scores best among the rest are negatives
  (less the question's own document's other code: another step of the same instructions may
  answer it as well), and for a share of questions a near miss (one word swapped,
  ``swap_word``) is read against the positive.

    python -m rag.train.code_data --out build/codeqa

An experiment, not part of ``make train-reader``: the reader trained with these pairs was not
shipped (its model card has the figures).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import random
import re
import sys
from dataclasses import asdict
from pathlib import Path

from rag.codeblocks import inside, is_fence
from rag.train.reader_data import Pair, swap_word

DOC_ROOT = Path("/usr/share/doc")
EVAL_CORPORA = Path(__file__).resolve().parents[2] / "evals" / "corpora"
MIN_DOC_CHARS = 1500
MAX_QUESTIONS_PER_DOC = 30
NEGATIVES = 3
SWAP_SHARE = 0.3

_COMMENT = re.compile(r"^\s*(?:>>>\s*|\$\s*)?(?:#+|//)\s*(.+?)\s*$")
_PARENTHESIS = re.compile(r"\s*\([^)]*\)")
_LEAD_IN = re.compile(
    r"(?:^|[.!?]\s+|\n)(?:To|In order to|If you want to|If you'd like to)\s+([^,:\n]{8,120}?),"
    r"[^\n]*:\s*$"
)
_INSTALL_LINE = re.compile(
    r"\b(?:pip3?|uv|uv pip|conda|mamba|poetry|pipx|pdm|apt|apt-get|brew|npm|cargo)\s+"
    r"(?:install|add)\b"
)
_WORD = re.compile(r"[A-Za-z][\w'-]*")
# A comment or lead-in becomes a question only when it starts with one of these verbs (the
# imperative of a how-to step); without a part-of-speech tagger this is what tells "Create a
# client" from "Returns the client" or "Necessary only if ...".
_ORDER_WORDS = """
    access accept activate add adjust allow append apply assert assign attach authenticate
    avoid bind block build cache calculate call cancel capture change check clean clear clone
    close collect combine compare compile compute configure connect construct convert copy
    count create declare decode decompress define delete deploy detect disable display download
    drop dump emit enable encode encrypt decrypt ensure enter evaluate exclude execute exit
    export extend extract fetch filter find fix flush format generate get handle hash hide
    ignore import include increase initialize initialise insert inspect install invoke iterate
    join keep kill launch limit list listen load lock log login make map mark match measure
    merge migrate mock modify monitor mount move open override overwrite parse pass patch pause
    perform pick pin pipe plot point populate post prepare prevent print process produce profile
    provide publish pull push put query raise read rebuild receive record redirect reduce
    refresh register reject reload remove rename render repeat replace request reset resize
    resolve restart restore restrict resume retrieve retry return reuse run save scan schedule
    search select send serialize serialise serve set setup share show shut sign skip sleep sort
    spawn specify split start stop store stream submit subscribe switch sync tag test throw
    time toggle track train transform translate trigger truncate try turn uninstall unlock
    unpack update upgrade upload use validate verify view visualize wait walk watch wrap write
    yield
"""
_ORDERS = frozenset(_ORDER_WORDS.split())
MAX_QUESTIONS_PER_PACKAGE = 40
# A section's heading asks the question its first code block answers when the block starts
# within this many characters of it.
HEADING_REACH = 600
_TEMPLATES = ("How do I {}?", "How can I {}?", "How would I {}?", "How to {}?")


def normalise(name: str) -> str:
    """A package name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def evaluation_packages(corpora: Path = EVAL_CORPORA) -> set[str]:
    """Every package an evaluation corpus holds (its licence file's and its document's name).
    Without the corpora (not a checkout) nothing could be held out: an error, not an empty set."""
    names = {normalise(path.stem) for path in corpora.glob("*/LICENSES/*.txt")}
    if not names:
        raise FileNotFoundError(
            f"no evaluation corpora under {corpora}: build the pairs from a checkout of the "
            "repository, so that their documents are left out"
        )
    documents = corpora.glob("*/*/*")
    names |= {normalise(path.stem) for path in documents if path.suffix in {".md", ".rst"}}
    return names


def _held_out(package: str, excluded: set[str]) -> bool:
    """Whether ``package`` (a distribution or Debian package name) is one the evaluation sets
    use: the same name, or a Debian name around it (``python3-requests``)."""
    name = normalise(package)
    parts = set(name.split("-"))
    return name in excluded or any(
        name.endswith("-" + e) or name.startswith(e + "-") or e in parts for e in excluded
    )


def distribution_documents(excluded: set[str]) -> list[tuple[str, str, str, str]]:
    """(package, version, suffix, text) of each installed distribution's markdown or
    reStructuredText long description, less the held-out packages."""
    from importlib import metadata

    found = []
    for dist in metadata.distributions():
        meta = dist.metadata
        name = meta.get("Name") or ""
        if not name or _held_out(name, excluded):
            continue
        kind = (meta.get("Description-Content-Type") or "").lower()
        suffix = ".md" if "markdown" in kind else ".rst" if "rst" in kind else ""
        text = meta.get_payload() or meta.get("Description") or ""
        if suffix and len(text) >= MIN_DOC_CHARS:
            found.append((name, meta.get("Version") or "", suffix, text))
    return sorted(found)


def debian_documents(excluded: set[str], root: Path = DOC_ROOT) -> list[tuple[str, str, str, str]]:
    """(package, file, suffix, text) of the markdown and reStructuredText files under
    ``root`` (``/usr/share/doc``), less the held-out packages."""
    found = []
    for path in sorted(root.glob("*/**/*")):
        names = path.name.lower()
        compressed = names.endswith(".gz")
        base = names[:-3] if compressed else names
        suffix = ".md" if base.endswith(".md") else ".rst" if base.endswith(".rst") else ""
        package = path.relative_to(root).parts[0]
        if not suffix or not path.is_file() or _held_out(package, excluded):
            continue
        data = gzip.decompress(path.read_bytes()) if compressed else path.read_bytes()
        text = data.decode("utf-8", errors="replace")
        if len(text) >= MIN_DOC_CHARS:
            found.append((package, str(path.relative_to(root)), suffix, text))
    return found


def write_corpus(folder: Path) -> list[dict]:
    """The source documents written to ``folder`` (one file each, duplicates by content left
    out); their manifest (package, version or file, sha256)."""
    excluded = evaluation_packages()
    folder.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    manifest = []
    sources = [("pypi", *row) for row in distribution_documents(excluded)]
    sources += [("debian", *row) for row in debian_documents(excluded)]
    for origin, package, detail, suffix, text in sources:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        stem = normalise(package) + ("" if origin == "pypi" else "--" + digest[:8])
        (folder / f"{stem}{suffix}").write_text(text, encoding="utf-8")
        manifest.append(
            {
                "file": f"{stem}{suffix}",
                "origin": origin,
                "package": package,
                "detail": detail,
                "sha256": digest,
            }
        )
    return manifest


def _order(comment: str) -> str | None:
    """A code comment as the clause of a how-to question ("Log in" → "log in"), or None when
    it reads as no instruction (a remark, a third-person description, too short or long)."""
    text = _PARENTHESIS.sub("", comment).strip().rstrip(".:;,!").strip()
    words = text.split()
    if words and words[0].lower() == "to":
        words = words[1:]
    if not 3 <= len(words) <= 14 or not _WORD.fullmatch(words[0]):
        return None
    first = _imperative(words[0].lower())
    if first is None:
        return None
    words[0] = first
    return " ".join(words)


def _imperative(word: str) -> str | None:
    """``word`` as an imperative verb of _ORDERS ("reading" → "read", "running" → "run"), or
    None."""
    if word in _ORDERS:
        return word
    if word.endswith("ing") and len(word) > 5:
        stem = word[:-3]
        for verb in (stem, stem + "e", stem[:-1]):
            if verb in _ORDERS:
                return verb
    return None


def _naming_line(clause: str, code: list[tuple[int, str]]) -> tuple[int, str] | None:
    """The first of ``code``'s (offset, line) that holds a word of ``clause`` (by its first
    five letters, four-letter words whole), so that a section's boilerplate first line
    ("'use strict';", "import x") is not taken for its answer; None if none does. (An import
    naming the word still is: "Reading a config file" takes "from x import Config".)"""
    from rag.terms import stopwords

    stop = stopwords()
    keys = {w[:5] for w in re.findall(r"[a-z]{4,}", clause.lower()) if w not in stop}
    for offset, line in code:
        lowered = line.lower()
        if any(key in lowered for key in keys):
            return offset, line
    return None


def _question(clause: str, package: str, rng: random.Random) -> str:
    """A how-to question for ``clause``, naming ``package`` in some of them as users do."""
    question = rng.choice(_TEMPLATES).format(clause)
    draw = rng.random()
    if draw < 0.4:
        return f"With {package}, {question[0].lower()}{question[1:]}"
    if draw < 0.6:
        return f"{question[:-1]} in {package}?"
    return question


def _lines(text: str, start: int, end: int) -> list[tuple[int, str]]:
    """(offset, line) of the lines of ``text[start:end]``, fences and blank lines left out."""
    lines, offset = [], start
    for line in text[start:end].splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if bare.strip() and not is_fence(bare):
            lines.append((offset, bare))
        offset += len(line)
    return lines


def questions_of(text: str, code_blocks, headings, package: str, rng: random.Random) -> list[dict]:
    """Template how-to questions of one loaded document: each with its answer line and
    where that line starts in ``text``."""
    found: list[dict] = []

    def add(question: str, offset: int, line: str, kind: str) -> None:
        answer = line.strip()
        if len(answer) >= 4:
            found.append(
                {
                    "question": question,
                    "answer": answer,
                    "at": offset + line.index(answer),
                    "kind": kind,
                }
            )

    for index, heading in enumerate(headings):
        ends = headings[index + 1].start if index + 1 < len(headings) else len(text)
        first = next((block for block in code_blocks if heading.start < block[0] < ends), None)
        clause = _order(heading.text)
        if clause and first and first[0] - heading.start <= HEADING_REACH:
            code = [(o, line) for o, line in _lines(text, *first) if not _COMMENT.match(line)]
            line = _naming_line(clause, code)
            if line:
                add(_question(clause, package, rng), *line, "code_heading")
    installed = False
    for start, end in code_blocks:
        lines = _lines(text, start, end)
        code = [(o, line) for o, line in lines if not _COMMENT.match(line)]
        for (_, line), (next_offset, next_line) in itertools.pairwise(lines):
            match = _COMMENT.match(line)
            if match and not _COMMENT.match(next_line):
                clause = _order(match.group(1))
                if clause:
                    add(_question(clause, package, rng), next_offset, next_line, "code_comment")
        before = text[max(0, start - 400) : start].rstrip()
        lead = _LEAD_IN.search(before)
        if lead and code:
            clause = _order(lead.group(1))
            if clause:
                add(_question(clause, package, rng), *code[0], "code_lead_in")
        section = [h for h in headings if h.start <= start]
        if not installed and section and "install" in section[-1].text.lower():
            command = next(((o, line) for o, line in code if _INSTALL_LINE.search(line)), None)
            if command:
                template = rng.choice(
                    ("How do I install {}?", "What command installs {}?", "How can I install {}?")
                )
                add(template.format(package), *command, "code_install")
                installed = True
    rng.shuffle(found)
    return found[:MAX_QUESTIONS_PER_DOC]


def build(out: Path, reader_dir: Path | None = None, seed: int = 13) -> list[Pair]:
    """Write the corpus under ``out``, index it, and build the pairs (see the module doc) with
    the reader in ``reader_dir`` (default: the shipped one) choosing the negatives."""
    from rag.answer import RAG
    from rag.answer.reading import reading_title
    from rag.config import load_settings
    from rag.ingest import ingest
    from rag.loaders import LoaderError, load_file

    rng = random.Random(seed)
    docs = out / "docs"
    manifest = write_corpus(docs)
    settings = load_settings(index_dir=out / "index", collection="howto", reader_dir=reader_dir)
    ingest([docs], settings)
    bot = RAG(settings)
    pairs: list[Pair] = []
    counts = {"questions": 0, "read": 0}
    per_package: dict[str, int] = {}
    for entry in manifest:
        path = docs / entry["file"]
        try:
            loaded = load_file(path)
        except LoaderError:  # a document our loaders cannot read gives no questions
            continue
        package = entry["package"]
        if entry["origin"] == "debian":
            package = re.sub(r"^python3?-", "", package)
        asked = questions_of(loaded.text, loaded.code_blocks, loaded.headings, package, rng)
        room = MAX_QUESTIONS_PER_PACKAGE - per_package.get(package, 0)
        per_package[package] = per_package.get(package, 0) + len(asked[:room])
        for item in asked[: max(0, room)]:
            counts["questions"] += 1
            chunks = bot.searcher.search(item["question"]).chunks
            candidates = bot.rank_sentences(item["question"], chunks)
            positives, others = [], []
            for candidate in candidates:
                chunk = chunks[candidate.chunk_index]
                unit = chunk.text[candidate.start : candidate.end]
                if item["answer"] not in unit:
                    if not (Path(chunk.source).name == path.name and _has_code(chunk, candidate)):
                        others.append((candidate, chunk, unit))
                    continue
                if Path(chunk.source).name != path.name:
                    continue
                at = unit.find(item["answer"], max(0, item["at"] - chunk.start - candidate.start))
                at = at if at >= 0 else unit.find(item["answer"])
                positives.append((chunk, candidate, unit, (at, at + len(item["answer"]))))
            if not positives:
                continue
            counts["read"] += 1
            question = item["question"]
            for chunk, candidate, unit, span in positives:
                pairs.append(
                    Pair(question, reading_title(chunk, candidate.start), unit, span, item["kind"])
                )
            others.sort(key=lambda other: other[0].reader_score, reverse=True)
            for candidate, chunk, unit in others[:NEGATIVES]:
                pairs.append(
                    Pair(
                        question, reading_title(chunk, candidate.start), unit, None, "code_negative"
                    )
                )
            if rng.random() < SWAP_SHARE:
                chunk, candidate, unit, _ = positives[0]
                swapped = swap_word(question, unit, loaded.text, rng)
                if swapped:
                    pairs.append(
                        Pair(
                            swapped,
                            reading_title(chunk, candidate.start),
                            unit,
                            None,
                            "code_swapped",
                        )
                    )
    summary = {"documents": len(manifest), **counts, "pairs": len(pairs)}
    (out / "manifest.json").write_text(
        json.dumps({"summary": summary, "sources": manifest}, indent=1) + "\n", encoding="utf-8"
    )
    print(json.dumps(summary), flush=True)
    return pairs


def _has_code(chunk, candidate) -> bool:
    """Whether a unit holds code: another step of the same document's instructions may answer
    the question as well as the line the template took, so it is no negative."""
    return any(inside(chunk.code, at) is not None for at in (candidate.start, candidate.end - 1))


def save_pairs(pairs: list[Pair], path: Path) -> None:
    """Pairs as gzip'd JSON lines."""
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for pair in pairs:
            handle.write(json.dumps(asdict(pair)) + "\n")


def load_pairs(path: Path) -> list[Pair]:
    """Pairs written by ``save_pairs``."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [
        Pair(
            r["question"],
            r["title"],
            r["sentence"],
            tuple(r["answer"]) if r["answer"] is not None else None,
            r["kind"],
        )
        for r in rows
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/codeqa"))
    parser.add_argument(
        "--reader", type=Path, default=None, help="the reader choosing negatives (default: shipped)"
    )
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    pairs = build(args.out, args.reader, args.seed)
    save_pairs(pairs, args.out / "pairs.jsonl.gz")
    print(f"wrote {len(pairs)} pairs to {args.out / 'pairs.jsonl.gz'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
