"""Set the reader's decision thresholds on the held-out *validation* articles.

    python -m rag.train.calibrate [--reader rag/models/reader]     (part of make train-reader)

Indexes the validation corpus (rag.train.heldout), runs retrieval and the reader on its three
question sets exactly as answering does, and picks:

- the sentence ranker (``rag.train.ranking``): a logistic regression of "this candidate
  sentence holds the answer" on the reader's score, the sentence's cosine similarity to the
  question and its chunk's retrieval rank, fitted on the answerable questions' candidates;
  its logit is the candidate's score below;
- the answerability combination: a logistic regression of "answerable" on the reader's best
  score for the top sentences read after the sentence before them (the pipeline's
  ``context_score``) and the best chunk's cosine similarity, fitted on the validation
  questions (answerable vs adversarial and out-of-corpus);
- ``answer_threshold`` on that combination, and ``sentence_threshold`` on the best
  candidate's score alone: the highest values whose false-refusal rate on the answerable
  questions stays within FALSE_REFUSAL_BUDGET, i.e. as many unanswerable questions refused as
  that budget allows;
- ``direct_answer_threshold``: the lowest best-sentence score at which the reader's short answer
  leads the quote and is right (SQuAD token F1 >= 0.5 with an expected answer) for at least
  DIRECT_PRECISION of the validation answers that show one;
- ``second_sentence_margin``: how close to the best sentence a second one must score to be
  quoted too, maximising answer accuracy less SECOND_SENTENCE_COST per two-sentence answer
  (a second quote is worth it when at least one in ten rescues an answer).

All of it, with the validation figures it came from, goes into the model's ``reader.json``.
The test split is never read here. ``--cross-validate RECORDS`` prints the same figures by
cross-validation (each fold calibrated on the others), for judging a change on validation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from rag.reader import Calibration
from rag.train.ranking import fit_ranker, holds_answer, ranked

FALSE_REFUSAL_BUDGET = 0.05
SECOND_SENTENCE_COST = 0.1
DIRECT_PRECISION = 0.8
MARGINS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


def collect(reader_dir: Path, sets_dir: Path, index_dir: Path) -> dict[str, list[dict]]:
    """Per question: every candidate sentence answering would read, with the reader's score
    alone and in context, its cosine and chunk rank (the rows ``rag.train.ranking`` reads)."""
    from rag.answer import RAG, direct_answer
    from rag.config import load_settings
    from rag.evaluation import load_question_set
    from rag.ingest import ingest

    settings = load_settings(index_dir=index_dir, collection="calibration", reader_dir=reader_dir)
    ingest([sets_dir / "corpus"], settings)
    bot = RAG(settings)
    records: dict[str, list[dict]] = {}
    for name in ("answerable", "adversarial", "outside"):
        rows = []
        for item in load_question_set(sets_dir / f"{name}.yaml").items():
            question = item.case.question
            retrieval = bot.searcher.search(question)
            chunks = retrieval.chunks
            candidates = bot.rank_sentences(question, chunks)
            in_context = bot.in_context_scores(question, candidates, chunks)
            rows.append(
                {
                    "id": item.id,
                    "expected": item.case.expected,
                    "dense": retrieval.best_dense,
                    "cands": [
                        {
                            "score": c.reader_score,
                            "ctx": ctx,
                            "cos": c.cosine,
                            "rank": c.chunk_index,
                            "text": chunks[c.chunk_index].text[c.start : c.end],
                            "direct": direct_answer(c, chunks),
                            "decides": c.decides,
                        }
                        for c, ctx in zip(candidates, in_context, strict=True)
                    ],
                }
            )
        records[name] = rows
    return records


def _best(rows: list[dict]) -> np.ndarray:
    return np.array([r["scores"][0] if r["scores"] else -1e4 for r in rows])


def token_f1(prediction: str, truth: str) -> float:
    """SQuAD's token F1 (lower-cased words, articles and punctuation dropped)."""
    import re
    from collections import Counter

    def tokens(text: str) -> list[str]:
        text = re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^\w\s]", " ", text.lower()))
        return text.split()

    pred, gold = tokens(prediction), tokens(truth)
    common = sum((Counter(pred) & Counter(gold)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def direct_threshold(rows: list[dict]) -> tuple[float, float, float]:
    """(threshold, precision, share of answers led by a direct answer) — the lowest threshold
    at which DIRECT_PRECISION of the shown direct answers are right."""
    shown = [
        (row["scores"][0], max(token_f1(row["direct"], alt) for alt in row["expected"][0]) >= 0.5)
        for row in rows
        if row["scores"] and row["direct"] and row["expected"]
    ]
    shown.sort(reverse=True)
    best = (float("inf"), 1.0, 0.0)
    right = 0
    for count, (score, correct) in enumerate(shown, start=1):
        right += correct
        if right / count >= DIRECT_PRECISION:
            best = (score, right / count, count / len(rows))
    return best


def _threshold(answerable: np.ndarray, others: np.ndarray) -> float:
    """The highest threshold refusing at most FALSE_REFUSAL_BUDGET of ``answerable``, placed
    midway to the next lower answerable value (so no validation item sits on the edge)."""
    candidates = np.unique(np.concatenate([answerable, others]))
    allowed = [t for t in candidates if np.mean(answerable < t) <= FALSE_REFUSAL_BUDGET]
    threshold = float(max(allowed)) if allowed else float(candidates.min())
    lower = answerable[answerable < threshold]
    return float((threshold + lower.max()) / 2) if lower.size else threshold


def _features(rows: list[dict]) -> np.ndarray:
    """Answerability features: the top sentences' best score read in context, best cosine."""
    return np.array([[max(r["context"], -1e4), r["dense"]] for r in rows])


def fit_answerability(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights and bias (on the raw features) of a logistic regression of "answerable".

    The features are standardised for the fit: the reader's score spans tens of units and the
    cosine less than one, so an L2 penalty on raw weights would shrink the cosine's weight far
    more than the reader's (on the 1,160 validation questions, 5-fold cross-validation at the
    5 % budget: 0.386 of near misses and 0.929 of out-of-corpus questions refused, against
    0.346 and 0.915 fitted on raw features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    model = LogisticRegression(C=1.0, class_weight="balanced")
    model.fit(scaler.transform(features), labels)
    weights = model.coef_[0] / scaler.scale_
    return weights, float(model.intercept_[0] - weights @ scaler.mean_)


def quoted(row: dict, sentence_threshold: float, margin: float) -> list[str]:
    """What an extractive answer quotes for a ranked row: the best sentence, and the second
    when it reaches ``sentence_threshold`` and scores within ``margin`` of the best."""
    scores, texts = row["scores"], row["texts"]
    if len(scores) > 1 and scores[1] >= max(sentence_threshold, scores[0] - margin):
        return texts[:2]
    return texts[:1]


def choose(records: dict[str, list[dict]]) -> dict:
    """The calibration (reader.json ``calibration``) for records written by ``collect``."""
    ranker = fit_ranker(records["answerable"])
    calibration = {
        "rank_reader_weight": round(ranker.rank_reader_weight, 6),
        "rank_cosine_weight": round(ranker.rank_cosine_weight, 6),
        "rank_chunk_weight": round(ranker.rank_chunk_weight, 6),
        "rank_bias": round(ranker.rank_bias, 6),
    }
    seen = {name: [ranked(row, ranker) for row in rows] for name, rows in records.items()}
    return calibration | _thresholds(seen)


def _thresholds(records: dict[str, list[dict]]) -> dict:
    """Answerability, thresholds and margin for rows already ranked (``ranking.ranked``)."""
    rows = records["answerable"] + records["adversarial"] + records["outside"]
    labels = np.array(
        [1] * len(records["answerable"]) + [0] * (len(rows) - len(records["answerable"]))
    )
    (reader_weight, dense_weight), bias = fit_answerability(_features(rows), labels)

    def logit(name: str) -> np.ndarray:
        f = _features(records[name])
        return reader_weight * f[:, 0] + dense_weight * f[:, 1] + bias

    answerable, adversarial, outside = logit("answerable"), logit("adversarial"), logit("outside")
    threshold = _threshold(answerable, np.concatenate([adversarial, outside]))
    best = _best(records["answerable"])
    sentence_threshold = _threshold(best, _best(records["adversarial"]))
    answered = [
        row
        for row, value in zip(records["answerable"], answerable, strict=True)
        if value >= threshold
    ]

    def accuracy(margin: float) -> tuple[float, float]:
        texts = [quoted(row, sentence_threshold, margin) for row in answered]
        correct = sum(holds_answer(row, t) for row, t in zip(answered, texts, strict=True))
        n = len(records["answerable"])
        return correct / n, sum(len(t) == 2 for t in texts) / n

    scored = {m: accuracy(m) for m in MARGINS}
    margin = max(MARGINS, key=lambda m: scored[m][0] - SECOND_SENTENCE_COST * scored[m][1])
    top1 = np.mean([holds_answer(r, r["texts"][:1]) for r in records["answerable"] if r["texts"]])
    direct, direct_precision, direct_share = direct_threshold(answered)
    return {
        "answer_reader_weight": round(float(reader_weight), 4),
        "answer_dense_weight": round(float(dense_weight), 4),
        "answer_bias": round(float(bias), 4),
        "answer_threshold": round(threshold, 4),
        "sentence_threshold": round(sentence_threshold, 4),
        "direct_answer_threshold": round(direct, 4) if direct != float("inf") else 1e4,
        "second_sentence_margin": margin,
        "validation": {
            "questions": {name: len(rows) for name, rows in records.items()},
            "false_refusal_rate": round(float(np.mean(answerable < threshold)), 4),
            "adversarial_refused": round(float(np.mean(adversarial < threshold)), 4),
            "outside_refused": round(float(np.mean(outside < threshold)), 4),
            "reader_only": {
                "false_refusal_rate": round(float(np.mean(best < sentence_threshold)), 4),
                "adversarial_refused": round(
                    float(np.mean(_best(records["adversarial"]) < sentence_threshold)), 4
                ),
                "outside_refused": round(
                    float(np.mean(_best(records["outside"]) < sentence_threshold)), 4
                ),
            },
            "top1_sentence_has_answer": round(float(top1), 4),
            "answer_accuracy": round(scored[margin][0], 4),
            "two_sentence_share": round(scored[margin][1], 4),
            "direct_answer_precision": round(direct_precision, 4),
            "direct_answer_share": round(
                direct_share * len(answered) / len(records["answerable"]), 4
            ),
            "direct_precision_target": DIRECT_PRECISION,
            "false_refusal_budget": FALSE_REFUSAL_BUDGET,
            "second_sentence_cost": SECOND_SENTENCE_COST,
        },
    }


def outcome(calibration: dict, row: dict) -> tuple[bool, bool, bool]:
    """(refused, top sentence holds the answer, answered right) for one question of records
    written by ``collect``, under ``calibration`` (as ``choose`` returns it)."""
    values = Calibration.from_values(calibration)
    seen = ranked(row, values)
    logit = values.answerability(*_features([seen])[0])
    refused = bool(logit < values.answer_threshold)
    texts = quoted(seen, values.sentence_threshold, values.second_sentence_margin)
    top = holds_answer(seen, seen["texts"][:1])
    return refused, top, not refused and holds_answer(seen, texts)


def cross_validate(
    records: dict[str, list[dict]], repeats: int = 10, folds: int = 5
) -> dict[str, float]:
    """The validation figures by ``folds``-fold cross-validation repeated ``repeats`` times:
    ``choose`` run on each training fold (ranker, answerability, thresholds, margin), its
    calibration applied to the held-out fold. False refusals, the share of near misses and of
    out-of-corpus questions refused, and over the answerable questions the share whose top
    sentence holds the answer and the share answered right."""
    names = ("answerable", "adversarial", "outside")
    rows = [row for name in names for row in records[name]]
    kind = np.array([i for i, name in enumerate(names) for _ in records[name]])
    figures = []
    for repeat in range(repeats):
        order = np.random.default_rng(repeat).permutation(len(rows))
        results = np.zeros((len(rows), 3), dtype=bool)
        for fold in range(folds):
            held = order[fold::folds]
            train = np.setdiff1d(order, held)
            calibration = choose(
                {name: [rows[i] for i in train if kind[i] == k] for k, name in enumerate(names)}
            )
            for i in held:
                results[i] = outcome(calibration, rows[i])
        answerable = results[kind == 0]
        figures.append(
            [
                answerable[:, 0].mean(),
                results[kind == 1, 0].mean(),
                results[kind == 2, 0].mean(),
                answerable[:, 1].mean(),
                answerable[:, 2].mean(),
            ]
        )
    mean = np.mean(figures, axis=0)
    keys = (
        "false_refusal_rate",
        "adversarial_refused",
        "outside_refused",
        "top1_sentence_has_answer",
        "answer_accuracy",
    )
    return {key: round(float(value), 3) for key, value in zip(keys, mean, strict=True)}


def main(argv: list[str] | None = None) -> int:
    from rag.reader import READER_DIR
    from rag.train.heldout import build

    parser = argparse.ArgumentParser(description="Calibrate the reader on validation articles.")
    parser.add_argument("--reader", type=Path, default=READER_DIR)
    parser.add_argument("--sets", type=Path, default=Path("build/heldout"))
    parser.add_argument("--records", type=Path, default=None, help="also write per-question data")
    parser.add_argument(
        "--cross-validate",
        type=Path,
        metavar="RECORDS",
        help="only print the cross-validated validation figures of records written by --records",
    )
    parser.add_argument(
        "--sectioned",
        action="store_true",
        help="only print the cross-validated figures on the validation articles laid out as "
        "sections of four documents (<sets>/validation-sectioned); reader.json is not written",
    )
    args = parser.parse_args(argv)
    if args.cross_validate:
        print(
            json.dumps(cross_validate(json.loads(args.cross_validate.read_text(encoding="utf-8"))))
        )
        return 0
    build(args.sets, splits=("validation",))
    split = "validation-sectioned" if args.sectioned else "validation"
    with tempfile.TemporaryDirectory(prefix="rag-calibrate-") as index_dir:
        records = collect(args.reader, args.sets / split, Path(index_dir))
    if args.records:
        args.records.write_text(json.dumps(records, indent=1), encoding="utf-8")
    if args.sectioned:
        print(json.dumps(cross_validate(records)))
        return 0
    calibration = choose(records)
    info_path = args.reader / "reader.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    kept = {k: v for k, v in info.get("calibration", {}).items() if k.startswith("select_")}
    info["calibration"] = {**kept, **calibration}  # the sentence selection: rag.train.selection
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(calibration, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
