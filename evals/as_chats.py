"""A question set asked as chats: its questions shuffled (seeded) and chained, four to a
conversation, so that each is asked after others it has nothing to do with, as a user asks
question after question in one chat. Scores what a follow-up rewrite costs questions that stand
on their own (README "Questions asked in a chat").

    python evals/as_chats.py evals/readmes-test.yaml build/readmes-test-chats.yaml [--seed 7]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import yaml

TURNS = 4


def as_chats(questions: list[dict], seed: int, turns: int = TURNS) -> list[dict]:
    """Conversations of ``turns`` questions each, in a seeded shuffled order."""
    order = list(questions)
    random.Random(seed).shuffle(order)
    return [
        {
            "id": f"chat{start // turns:03d}",
            "turns": [
                {key: value for key, value in item.items() if key not in ("id", "note")}
                for item in order[start : start + turns]
            ],
        }
        for start in range(0, len(order), turns)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    data = yaml.safe_load(args.questions.read_text(encoding="utf-8"))
    chats = as_chats(data["questions"], args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        yaml.safe_dump(
            {"name": f"{data['name']}-chats", "conversations": chats},
            sort_keys=False,
            allow_unicode=True,
        ),
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
