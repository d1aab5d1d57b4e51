"""The reader's sentence selection, fitted on the validation articles: which of the retrieved
chunks' sentences are worth reading (``rag.reader.Calibration.selection_score``).

For every answerable validation question, every unit the reader could read in its 4 retrieved
chunks, with its cosine similarity to the question, the share of the question's terms it holds
(``rag.answer.selection.term_overlaps``), its chunk's place, its length and whether it holds
an expected answer. A logistic regression of the last on the others gives the weights, written
into reader.json's ``calibration`` (``select_*``); ``rag.train.calibrate`` then fits the
thresholds on what the reader reads with them.

    python -m rag.train.selection [--reader DIR] [--sets build/heldout]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from rag.answer.reading import within_budget
from rag.answer.selection import term_overlaps
from rag.reader import Calibration
from rag.train.ranking import holds_answer

# Calibration fields, in the order of ``features``.
WEIGHTS = (
    "select_cosine_weight",
    "select_overlap_weight",
    "select_chunk_weight",
    "select_length_weight",
)
FOLDS = 5
REPEATS = 5


def collect_pools(reader_dir: Path, sets_dir: Path, index_dir: Path) -> list[dict]:
    """Per answerable question of ``sets_dir``: ``expected`` and ``units``, each unit's
    ``cos``, ``ovl``, ``rank``, ``len`` and ``y`` (holds an expected answer)."""
    from rag.answer import RAG
    from rag.config import load_settings
    from rag.evaluation import load_question_set
    from rag.ingest import ingest

    settings = load_settings(index_dir=index_dir, collection="selection", reader_dir=reader_dir)
    ingest([sets_dir / "corpus"], settings)
    bot = RAG(settings)
    rows = []
    for item in load_question_set(sets_dir / "answerable.yaml").items():
        question = item.case.question
        row = {"expected": item.case.expected}
        chunks = bot.searcher.search(question).chunks
        pool = bot.sentences.pool(question, chunks)
        texts = [chunks[index].text[a:b] for _, index, a, b in pool]
        row["units"] = [
            {
                "cos": cos,
                "ovl": ovl,
                "rank": index,
                "len": len(text),
                "y": holds_answer(row, [text]),
            }
            for (cos, index, _, _), ovl, text in zip(
                pool, term_overlaps(question, texts), texts, strict=True
            )
        ]
        rows.append(row)
    return rows


def features(unit: dict) -> list[float]:
    """A unit's inputs to ``Calibration.selection_score``, in the order of WEIGHTS."""
    return [unit["cos"], unit["ovl"], unit["rank"], math.log1p(unit["len"])]


def fit(rows: list[dict]) -> dict[str, float]:
    """The ``select_*`` weights: a logistic regression of "holds the answer" over all units."""
    from sklearn.linear_model import LogisticRegression

    x = np.array([features(u) for row in rows for u in row["units"]], dtype=float)
    y = np.array([u["y"] for row in rows for u in row["units"]], dtype=int)
    weights = LogisticRegression(C=1.0, max_iter=1000).fit(x, y).coef_[0]
    return {name: round(float(w), 6) for name, w in zip(WEIGHTS, weights, strict=True)}


def recall(rows: list[dict], weights: dict[str, float] | None) -> tuple[int, int]:
    """(questions whose reader candidates include an answering unit, questions with one among
    their units): candidates ordered by ``weights`` (by cosine for None), then
    ``within_budget``."""
    calibration = Calibration(**weights) if weights else Calibration()  # defaults: cosine
    hits = total = 0
    for row in rows:
        units = row["units"]
        if not any(u["y"] for u in units):
            continue
        total += 1
        worth = [
            calibration.selection_score(u["cos"], u["ovl"], u["rank"], u["len"]) for u in units
        ]
        order = sorted(range(len(units)), key=lambda i: worth[i], reverse=True)
        taken = within_budget(order, [" " * units[i]["len"] for i in order])
        hits += any(units[i]["y"] for i in taken)
    return hits, total


def fraction(hits: int, total: int) -> float:
    return hits / total if total else 0.0


def cross_validated_recall(rows: list[dict], seed: int = 0) -> float:
    """``recall`` with the weights fitted in FOLDS folds, REPEATS times, on the other folds."""
    rng = np.random.default_rng(seed)
    hits = total = 0
    for _ in range(REPEATS):
        order = rng.permutation(len(rows))
        for fold in np.array_split(order, FOLDS):
            held = set(fold.tolist())
            train = [row for i, row in enumerate(rows) if i not in held]
            found, asked = recall([rows[i] for i in fold], fit(train))
            hits, total = hits + found, total + asked
    return fraction(hits, total)


def main(argv: list[str] | None = None) -> int:
    from rag.reader import READER_DIR
    from rag.train.heldout import build

    parser = argparse.ArgumentParser(description="Fit the reader's sentence selection.")
    parser.add_argument("--reader", type=Path, default=READER_DIR)
    parser.add_argument("--sets", type=Path, default=Path("build/heldout"))
    args = parser.parse_args(argv)
    build(args.sets, splits=("validation",))
    with tempfile.TemporaryDirectory(prefix="rag-selection-") as index_dir:
        rows = collect_pools(args.reader, args.sets / "validation", Path(index_dir))
    weights = fit(rows)
    info_path = args.reader / "reader.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    info.setdefault("calibration", {}).update(weights)
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    figures = {
        "questions": len(rows),
        "recall_cosine": round(fraction(*recall(rows, None)), 4),
        "recall_cross_validated": round(cross_validated_recall(rows), 4),
    }
    print(json.dumps({**weights, **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
