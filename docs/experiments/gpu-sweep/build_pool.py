"""One-off: a superset pool of training pairs over every training-split question, compact."""

import json
import lzma
import sys
import time
from collections import Counter

from rag.train.reader_data import build_pairs
from rag.train.squad import load_articles, split_articles

t = time.time()
split = split_articles(load_articles())
pairs = build_pairs(
    split.train, 10**6, seed=13, swap_share=1.0, word_swap_share=1.0, same_article_share=1.0
)
idx = {"q": {}, "t": {}, "s": {}}


def get(kind, value):
    return idx[kind].setdefault(value, len(idx[kind]))


kinds = sorted({p.kind for p in pairs})
rows = []
for p in pairs:
    a0, a1 = p.answer if p.answer is not None else (-1, -1)
    rows.append(
        [get("q", p.question), get("t", p.title), get("s", p.sentence), a0, a1, kinds.index(p.kind)]
    )
out = {
    "questions": list(idx["q"]),
    "titles": list(idx["t"]),
    "sentences": list(idx["s"]),
    "kinds": kinds,
    "pairs": rows,
}
with lzma.open(sys.argv[1], "wt", encoding="utf-8", preset=9) as f:
    json.dump(out, f, separators=(",", ":"))
print(
    len(rows),
    Counter(p.kind for p in pairs),
    len(idx["q"]),
    len(idx["s"]),
    f"{time.time() - t:.0f}s",
)
