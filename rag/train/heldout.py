"""The held-out question sets, built from SQuAD articles that the reader never trained on.

    python -m rag.train.heldout [--out build/heldout]     (make heldout)

For each held-out split of ``rag.train.squad`` (``validation``: thresholds are calibrated on
it; ``test``: figures are reported from it, never tuned on) this writes

    <out>/<split>/corpus/*.md      the indexed articles, one Markdown file each
    <out>/<split>/answerable.yaml  questions about the indexed articles (expected answer,
                                   evidence sentence, source file)
    <out>/<split>/adversarial.yaml SQuAD 2.0's crowd-written unanswerable near misses about an
                                   indexed article (test: Spectre (2015 film))
    <out>/<split>/outside.yaml     questions about articles left out of the index
    <out>/<split>-sectioned/       the same sets over the same articles laid out as "## Title"
                                   sections of four "Reference collection N" documents

Run them with ``rag ingest <out>/<split>/corpus --index I`` and ``rag eval <set> --index I``
(``make eval-heldout`` does both; ``HELDOUT_SPLIT=test-sectioned`` for that layout).
Seeded: the same files every time.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from rag.chunking import sentence_spans
from rag.train.squad import Article, load_articles, split_articles

DEFAULT_OUT = Path("build/heldout")

SEED = 7
SECTIONED_DOCUMENTS = 4  # <split>-sectioned: the indexed articles as sections of this many


@dataclass(frozen=True)
class SetSizes:
    """How many questions each set of a split draws."""

    per_article: int  # answerable questions per indexed article
    per_outside_article: int  # questions per article left out of the index
    adversarial: int | None  # SQuAD 2.0 near misses of the indexed articles (None: all)


# The test sets are what the figures are reported on (unchanged since they were first built).
# Validation draws many more questions from its own articles: its thresholds sit at a 5 %
# false-refusal rate, which over 105 questions rested on about five of them.
SIZES = {
    "validation": SetSizes(per_article=40, per_outside_article=40, adversarial=None),
    "test": SetSizes(per_article=5, per_outside_article=7, adversarial=60),
}


def slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_").lower() or "article"


def write_corpus(articles: list[Article], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.md"):
        old.unlink()
    for article in articles:
        body = "\n\n".join(p.context.strip() for p in article.paragraphs)
        path = folder / f"{slug(article.title)}.md"
        path.write_text(f"# {article.display_title}\n\n{body}\n", encoding="utf-8")


def write_sectioned(articles: list[Article], split_folder: Path, folder: Path) -> None:
    """The split's indexed articles as sections ("## Title") of ``SECTIONED_DOCUMENTS``
    documents titled "Reference collection N", so that only a section heading says what a
    passage is about (as in a handbook or manual), and the split's question sets with their
    sources pointing at those documents."""
    corpus = folder / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for old in corpus.glob("*.md"):
        old.unlink()
    ordered = sorted(articles, key=lambda article: f"{slug(article.title)}.md")
    moved: dict[str, str] = {}
    for n in range(SECTIONED_DOCUMENTS):
        name = f"collection_{n + 1}.md"
        parts = [f"# Reference collection {n + 1}\n"]
        for article in ordered[n::SECTIONED_DOCUMENTS]:
            body = "\n\n".join(p.context.strip() for p in article.paragraphs)
            parts.append(f"## {article.display_title}\n{body}\n")
            moved[f"{slug(article.title)}.md"] = name
        (corpus / name).write_text("\n".join(parts), encoding="utf-8")
    for path in sorted(split_folder.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        header = "".join(line for line in text.splitlines(True) if line[:1] == "#")
        data = yaml.safe_load(text)
        for item in data["questions"]:
            if "source" in item:
                item["source"] = moved[item["source"]]
        questions = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
        (folder / path.name).write_text(header + questions, encoding="utf-8")


def answer_sentence(context: str, start: int, end: int) -> str | None:
    for a, b in sentence_spans(context):
        if a <= start and end <= b:
            return context[a:b].strip()
    return None


def answerable(articles: list[Article], per_article: int, rng: random.Random) -> list[dict]:
    items = []
    for article in articles:
        candidates = []
        for paragraph in article.paragraphs:
            for qa in paragraph.qas:
                if qa.impossible or not qa.answers:
                    continue
                text, start = qa.answers[0]
                if paragraph.context[start : start + len(text)] != text:
                    continue
                evidence = answer_sentence(paragraph.context, start, start + len(text))
                if evidence:
                    candidates.append((qa, evidence))
        for qa, evidence in rng.sample(candidates, min(per_article, len(candidates))):
            alternatives = sorted({text.strip() for text, _ in qa.answers if text.strip()})
            items.append(
                {
                    "id": qa.id,
                    "question": qa.question,
                    "answerable": True,
                    "expected": [alternatives],
                    "evidence": evidence,
                    "source": f"{slug(article.title)}.md",
                }
            )
    return items


def unanswerable(
    questions: list[tuple[str, str]], count: int | None, rng: random.Random
) -> list[dict]:
    """``count`` of ``questions`` (None: all of them, shuffled) as unanswerable items."""
    chosen = rng.sample(questions, len(questions) if count is None else min(count, len(questions)))
    return [{"id": qid, "question": text, "answerable": False} for qid, text in chosen]


def write_set(path: Path, name: str, note: str, items: list[dict]) -> None:
    header = (
        f"# {note}\n# Built by rag/train/heldout.py from SQuAD (CC BY-SA 4.0, Rajpurkar et al."
        " 2016, 2018); do not edit.\n"
    )
    body = yaml.safe_dump(
        {"name": name, "questions": items}, sort_keys=False, allow_unicode=True, width=100
    )
    path.write_text(header + body, encoding="utf-8")


def build(out: Path, splits: tuple[str, ...] = ("validation", "test")) -> None:
    """Write the corpus and the three question sets of each named split under ``out``."""
    split = split_articles(load_articles())
    for name, indexed, outside in (
        ("validation", split.validation, split.validation_outside),
        ("test", split.test, split.test_outside),
    ):
        if name not in splits:
            continue
        rng = random.Random(f"{SEED}-{name}")
        sizes = SIZES[name]
        folder = out / name
        write_corpus(indexed, folder / "corpus")
        write_set(
            folder / "answerable.yaml",
            f"heldout-{name}-answerable",
            f"Answerable questions about the {len(indexed)} indexed {name} articles.",
            answerable(indexed, sizes.per_article, rng),
        )
        adversarial = [
            (qa.id, qa.question)
            for article in indexed
            for paragraph in article.paragraphs
            for qa in paragraph.qas
            if qa.impossible
        ]
        write_set(
            folder / "adversarial.yaml",
            f"heldout-{name}-adversarial",
            "SQuAD 2.0 adversarial unanswerable questions about an indexed article.",
            unanswerable(adversarial, sizes.adversarial, rng),
        )
        outside_questions = [
            (item["id"], item["question"])
            for item in answerable(outside, sizes.per_outside_article, rng)
        ]
        write_set(
            folder / "outside.yaml",
            f"heldout-{name}-outside",
            f"Questions about {len(outside)} articles that are not in the index.",
            unanswerable(outside_questions, None, rng),
        )
        write_sectioned(indexed, folder, out / f"{name}-sectioned")
        print(f"{folder}: {len(indexed)} articles indexed, {len(outside)} outside (and -sectioned)")


def main() -> int:
    parser = argparse.ArgumentParser(description="Build the held-out question sets.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    build(parser.parse_args().out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
