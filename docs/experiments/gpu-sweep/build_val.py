"""One-off: val.json.xz (records + reader inputs in record order) and holds.json.xz."""

import json
import lzma
import sys
import zlib
from pathlib import Path

from rag.train.ranking import holds_answer

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
R = json.loads((src / "R.json").read_text())
B = json.loads((src / "bundle.json").read_text())
bundle = {}
holds = set()
for name, rows in R.items():
    out = []
    for row, b in zip(rows, B[name], strict=True):
        texts = [t for _, t in b["plain"]]
        used, index = set(), []
        for c in row["cands"]:
            j = next(j for j, t in enumerate(texts) if t == c["text"] and j not in used)
            used.add(j)
            index.append(j)
        out.append({"q": b["q"], "plain": b["plain"], "ctx": b["ctx"], "plain_index": index})
        if name == "answerable" and row["expected"]:
            ts = [c["text"] for c in row["cands"]]
            combos = [[t] for t in ts] + [
                [a, b2] for i, a in enumerate(ts) for j, b2 in enumerate(ts) if i != j
            ]
            for combo in combos:
                if holds_answer(row, combo):
                    holds.add(
                        zlib.crc32(
                            (" ".join(combo) + "\x00" + json.dumps(row["expected"])).encode()
                        )
                        & 0xFFFFFFFF
                    )
    bundle[name] = out
with lzma.open(dst / "val.json.xz", "wt", encoding="utf-8", preset=9) as f:
    json.dump({"records": R, "bundle": bundle}, f, separators=(",", ":"))
with lzma.open(dst / "holds.json.xz", "wt") as f:
    json.dump(sorted(holds), f)
print(len(holds))
