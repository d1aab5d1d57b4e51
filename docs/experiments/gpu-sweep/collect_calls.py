"""One-off: validation records with the shipped reader + every reader call's inputs."""

import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import rag.reader as rr
import rag.train.calibrate as cal
from rag.evaluation import load_question_set

calls = defaultdict(list)
orig = rr.Reader.score


def wrapped(self, question, candidates, batch_size=rr.BATCH_SIZE):
    calls[question].append([list(c) for c in candidates])
    return orig(self, question, candidates, batch_size)


rr.Reader.score = wrapped
out = Path(sys.argv[1])
out.mkdir(exist_ok=True)
with tempfile.TemporaryDirectory() as d:
    recs = cal.collect(Path("rag/models/reader"), Path("build/heldout/validation"), Path(d))
(out / "R.json").write_text(json.dumps(recs))
ptr = defaultdict(int)
bundle = {}
for name in ("answerable", "adversarial", "outside"):
    items = list(load_question_set(Path("build/heldout/validation") / f"{name}.yaml").items())
    rows = []
    for item, row in zip(items, recs[name], strict=True):
        q = item.case.question
        if not row["cands"]:
            rows.append({"q": q, "plain": [], "ctx": []})
            continue
        i = ptr[q]
        ptr[q] += 2
        plain, ctx = calls[q][i], calls[q][i + 1]
        assert len(plain) == len(ctx) == len(row["cands"]), (q, len(plain), len(ctx))
        rows.append({"q": q, "plain": plain, "ctx": ctx})
    bundle[name] = rows
(out / "bundle.json").write_text(json.dumps(bundle))
print("done", {k: len(v) for k, v in bundle.items()})
