"""SQuAD (CC BY-SA 4.0) as this project uses it: articles, and one fixed split by article.

The split is the single source of truth for held-out discipline: the reader trains on
``train`` only, thresholds are calibrated on ``validation``, and the figures we report come
from ``test`` (built into question sets by ``evals/heldout/build.py``). Whole articles are
held out, never single questions, so no test article's text was seen in training.

Two articles of the SQuAD 2.0 train slice hold all its adversarial unanswerable questions:
Spectre (2015 film) is kept entirely for test; The Legend of Zelda: Twilight Princess is split
by paragraph, even paragraphs for training and odd ones for validation.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

V11_FILE = "squad11_train.json.gz"
V2_SLICE_FILE = "squad2_train_slice10.json.gz"
ADVERSARIAL_TEST = "Spectre_(2015_film)"
ADVERSARIAL_SPLIT = "The_Legend_of_Zelda:_Twilight_Princess"
SPLIT_SEED = 20261201
HELD_OUT_INDEXED = 20  # articles per held-out split that go into its index
HELD_OUT_OUTSIDE = 6  # articles per held-out split whose questions are asked of that index


class SquadDataError(RuntimeError):
    """The SQuAD files are missing or malformed."""


@dataclass
class QA:
    id: str
    question: str
    answers: list[tuple[str, int]]  # (text, char start in the paragraph)
    impossible: bool = False
    plausible: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Paragraph:
    context: str
    qas: list[QA]


@dataclass
class Article:
    title: str  # SQuAD's page name, e.g. "Spectre_(2015_film)"
    paragraphs: list[Paragraph]

    @property
    def display_title(self) -> str:
        return self.title.replace("_", " ")


def squad_dir() -> Path:
    """``RAG_SQUAD_DIR``, else ``../shared/train/squad`` beside the repository."""
    configured = os.environ.get("RAG_SQUAD_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "shared" / "train" / "squad"


def _read(path: Path) -> list[Article]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)["data"]
    except FileNotFoundError:
        raise SquadDataError(
            f"{path} is missing: set RAG_SQUAD_DIR to the folder with the SQuAD files"
        ) from None
    except (OSError, ValueError, KeyError) as error:
        raise SquadDataError(f"{path} is not SQuAD JSON: {error}") from None
    articles = []
    for article in data:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = [
                QA(
                    id=qa["id"],
                    question=qa["question"].strip(),
                    answers=[(a["text"], int(a["answer_start"])) for a in qa.get("answers", [])],
                    impossible=bool(qa.get("is_impossible", False)),
                    plausible=[
                        (a["text"], int(a["answer_start"])) for a in qa.get("plausible_answers", [])
                    ],
                )
                for qa in paragraph["qas"]
            ]
            paragraphs.append(Paragraph(paragraph["context"], qas))
        articles.append(Article(article["title"], paragraphs))
    return articles


def load_articles(folder: Path | None = None) -> list[Article]:
    """SQuAD v1.1 train, with the ten articles of the 2.0 slice in their 2.0 form (which adds
    the adversarial unanswerable questions); each article once."""
    folder = folder or squad_dir()
    slice_articles = _read(folder / V2_SLICE_FILE)
    replaced = {article.title for article in slice_articles}
    return slice_articles + [a for a in _read(folder / V11_FILE) if a.title not in replaced]


@dataclass
class Split:
    train: list[Article]
    validation: list[Article]  # indexed in the validation set
    validation_outside: list[Article]  # their questions are out of corpus for validation
    test: list[Article]
    test_outside: list[Article]


def _paragraph_half(article: Article, parity: int) -> Article:
    return Article(article.title, article.paragraphs[parity::2])


def split_articles(articles: list[Article], seed: int = SPLIT_SEED) -> Split:
    """The fixed, seeded split by article (see the module docstring)."""
    by_title = {article.title: article for article in articles}
    for title in (ADVERSARIAL_TEST, ADVERSARIAL_SPLIT):
        if title not in by_title:
            raise SquadDataError(f"the SQuAD 2.0 slice lacks the article {title}")
    pool = sorted(t for t in by_title if t not in (ADVERSARIAL_TEST, ADVERSARIAL_SPLIT))
    random.Random(seed).shuffle(pool)
    n_in, n_out = HELD_OUT_INDEXED, HELD_OUT_OUTSIDE
    taken = [pool[i * (n_in + n_out) : (i + 1) * (n_in + n_out)] for i in range(2)]
    held = {title for group in taken for title in group}
    zelda = by_title[ADVERSARIAL_SPLIT]
    test_titles, validation_titles = taken
    return Split(
        train=[by_title[t] for t in pool if t not in held] + [_paragraph_half(zelda, 0)],
        validation=[by_title[t] for t in validation_titles[:n_in]] + [_paragraph_half(zelda, 1)],
        validation_outside=[by_title[t] for t in validation_titles[n_in:]],
        test=[by_title[t] for t in test_titles[:n_in]] + [by_title[ADVERSARIAL_TEST]],
        test_outside=[by_title[t] for t in test_titles[n_in:]],
    )
