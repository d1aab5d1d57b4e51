"""One-off: the shipped reader rescored in fp32 on the captured validation inputs, as the
sweep rescores its variants (so all are compared at one precision).

    python .gpu/rescore_shipped.py RECORDS_OUT     (from the repository root; writes
    .gpu/shipped_scores.json.xz, which the sweep's baseline reads)
"""

import json
import lzma
import sys
import time
from pathlib import Path

import torch
from transformers import BertForQuestionAnswering

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sweep

torch.set_num_threads(2)
began = time.time()
model = BertForQuestionAnswering.from_pretrained("rag/models/reader", dtype=torch.float32).eval()
model.half().float()
scores = sweep.rescore(model, torch.device("cpu"), smoke=False)
with lzma.open(sweep.HERE / "shipped_scores.json.xz", "wt", encoding="utf-8") as f:
    json.dump(scores, f)
records = sweep.records_for(scores, smoke=False)
Path(sys.argv[1]).write_text(json.dumps(records), encoding="utf-8")
print(f"done in {time.time() - began:.0f} s")
