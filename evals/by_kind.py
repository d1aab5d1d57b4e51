"""Figures per kind of question (the items' `note`: "how-to", "prose"; unanswerable items are
one kind whatever their note) from a `rag eval --json` result.

    python evals/by_kind.py evals/readmes-test.yaml result.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def kind(item: dict) -> str:
    if item.get("answerable") is False:
        return "unanswerable"
    return str(item.get("note") or "other").split()[0]


def main(question_set: Path, result: Path) -> None:
    items = {
        item["id"]: item for item in yaml.safe_load(question_set.read_text("utf-8"))["questions"]
    }
    totals: dict[str, list[int]] = {}
    for row in json.loads(result.read_text("utf-8"))["items"]:
        name = kind(items[row["id"]])
        count = totals.setdefault(name, [0, 0, 0])
        count[0] += 1
        if name == "unanswerable":
            count[1] += bool(row["refused"])
        else:
            count[1] += bool(row["answer_correct"])
            count[2] += bool(row["refused"])
    for name, (n, right, refused) in sorted(totals.items()):
        what = "refused" if name == "unanswerable" else "answered right"
        extra = "" if name == "unanswerable" else f", {refused} refused"
        print(f"{name:13} {right}/{n} {what} ({right / n:.3f}){extra}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
