"""One-off: the pool with rag.train.code_data's how-to pairs (code answers) appended, each
REPEAT times (so that a from-the-base run sees them about as often as CODEQA's stage 3 did,
relative to its SQuAD pairs).

    python .gpu/add_code_pairs.py .gpu/pool.json.xz build/codeqa/pairs.jsonl.gz 10 .gpu/pool.json.xz
"""

import json
import lzma
import sys
from collections import Counter
from pathlib import Path

from rag.train.code_data import load_pairs

source, code_file, repeat, target = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with lzma.open(source, "rt", encoding="utf-8") as f:
    pool = json.load(f)
index = {
    name: {value: i for i, value in enumerate(pool[name])}
    for name in ("questions", "titles", "sentences")
}


def get(name, value):
    if value not in index[name]:
        index[name][value] = len(pool[name])
        pool[name].append(value)
    return index[name][value]


added = Counter()
for pair in load_pairs(code_file):
    if pair.kind not in pool["kinds"]:
        pool["kinds"].append(pair.kind)
    a0, a1 = pair.answer if pair.answer is not None else (-1, -1)
    row = [
        get("questions", pair.question),
        get("titles", pair.title),
        get("sentences", pair.sentence),
        a0,
        a1,
        pool["kinds"].index(pair.kind),
    ]
    pool["pairs"].extend([row] * repeat)
    added[pair.kind] += repeat
with lzma.open(target, "wt", encoding="utf-8", preset=9) as f:
    json.dump(pool, f, separators=(",", ":"))
print(len(pool["pairs"]), dict(added))
