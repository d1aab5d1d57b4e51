"""One-off GPU sweep (not part of the product): reader variants trained from the base encoder
on a pool of pairs built by rag.train.reader_data, rescored on the captured validation reader
inputs, and cross-validated with rag.train.calibrate's own code.

    python .gpu/sweep.py --out DIR [--smoke] [--variants ACDE] [--deadline SECONDS]

Run from a copy of this folder at the repository root (``.gpu/``, git-ignored), beside its
data (README.md here: base/, pool.json.xz, val.json.xz, holds.json.xz, shipped_scores.json.xz).

Parent: encodes the pool once, runs one child per variant (concurrently), then one CV child per
variant and for the shipped records, then writes summary.json and the chosen variants' weights
(without the frozen word embeddings) to --out.
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import os
import random
import subprocess
import sys
import time
import types
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASE = HERE / "base"
MAX_LENGTH = 128
NO_ROOM = -1e4
WORK = Path(os.environ.get("SWEEP_WORK", "/tmp/sweep"))

# name: (kind shares, epochs). Shares: the fraction of that kind's pairs kept (by hash).
CODE_KINDS = (
    "code_comment",
    "code_heading",
    "code_install",
    "code_lead_in",
    "code_negative",
    "code_swapped",
)
CORE = {"positive": 1.0, "paragraph": 1.0, "other_article": 1.0, "adversarial": 1.0}
VARIANTS = {
    "A": ({**CORE, "swapped": 0.25}, 1.0),
    "B": ({**CORE, "swapped": 0.25}, 2.0),
    "C": ({**CORE, "swapped": 1.0, "word_swapped": 0.5}, 1.0),
    "D": ({**CORE, "swapped": 1.0, "word_swapped": 0.5, "same_article": 0.5}, 2.0),
    "E": ({**CORE, "swapped": 1.0, "word_swapped": 0.5}, 2.0),
    # A with rag.train.code_data's how-to pairs (a pool made by add_code_pairs.py; not run yet)
    "F": ({**CORE, "swapped": 0.25, **dict.fromkeys(CODE_KINDS, 1.0)}, 1.0),
}


def stub_rag() -> None:
    """Let rag.reader / rag.train.calibrate import without the product's dependencies."""
    sys.path.insert(0, str(ROOT))
    config = types.ModuleType("rag.config")

    class RagError(Exception):
        pass

    config.RagError = RagError
    sys.modules["rag.config"] = config
    answer = types.ModuleType("rag.answer")
    reading = types.ModuleType("rag.answer.reading")
    reading.CONTEXT_CANDIDATES = 2
    sys.modules["rag.answer"] = answer
    sys.modules["rag.answer.reading"] = reading
    holds = set(read_xz(HERE / "holds.json.xz"))
    evaluation = types.ModuleType("rag.evaluation")

    def missing_groups(answer_text, expected):
        key = zlib.crc32((answer_text + "\x00" + json.dumps(expected)).encode()) & 0xFFFFFFFF
        return [] if key in holds else [["?"]]

    evaluation.missing_groups = missing_groups
    sys.modules["rag.evaluation"] = evaluation


def read_xz(path: Path):
    """JSON from an xz-compressed file."""
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def log(*parts) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


# Parent: encode ------------------------------------------------------------------------------


def encode_pool(smoke: bool) -> None:
    import torch
    from transformers import AutoTokenizer

    pool = read_xz(HERE / "pool.json.xz")
    pairs = pool["pairs"]
    if smoke:
        pairs = pairs[:600]
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    questions, texts, offsets = [], [], []
    for qi, ti, si, _, _, _ in pairs:
        title = " ".join(pool["titles"][ti].split())
        prefix = title + " | " if title else ""
        questions.append(pool["questions"][qi])
        texts.append(prefix + pool["sentences"][si])
        offsets.append(len(prefix))
    encoded = tokenizer(
        questions,
        texts,
        truncation="longest_first",
        max_length=MAX_LENGTH,
        return_offsets_mapping=True,
    )
    n = len(pairs)
    ids = torch.zeros((n, MAX_LENGTH), dtype=torch.int32)
    types_ = torch.zeros((n, MAX_LENGTH), dtype=torch.int8)
    lengths = torch.zeros(n, dtype=torch.int32)
    start = torch.zeros(n, dtype=torch.int64)
    end = torch.zeros(n, dtype=torch.int64)
    keep = torch.ones(n, dtype=torch.bool)
    kind = torch.zeros(n, dtype=torch.int64)
    hashes = torch.zeros(n, dtype=torch.int64)
    for i, (_, _, _, a0, a1, k) in enumerate(pairs):
        row = encoded["input_ids"][i]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.int32)
        types_[i, : len(row)] = torch.tensor(encoded["token_type_ids"][i], dtype=torch.int8)
        lengths[i] = len(row)
        kind[i] = k
        hashes[i] = zlib.crc32(f"{questions[i]}|{texts[i]}".encode()) % 10000
        if a0 >= 0:
            cs, ce = a0 + offsets[i], a1 + offsets[i]
            seq = encoded.sequence_ids(i)
            tokens = [
                t
                for t, (a, b) in enumerate(encoded["offset_mapping"][i])
                if seq[t] == 1 and a < ce and b > cs
            ]
            if not tokens:
                keep[i] = False
                continue
            start[i], end[i] = tokens[0], tokens[-1]
    torch.save(
        {
            "ids": ids,
            "types": types_,
            "lengths": lengths,
            "start": start,
            "end": end,
            "keep": keep,
            "kind": kind,
            "hash": hashes,
            "kinds": pool["kinds"],
        },
        WORK / "rows.pt",
    )
    log(f"encoded {n} pairs, {int((~keep).sum())} positives truncated away")


# Child: train one variant ----------------------------------------------------------------------


def train_variant(name: str, budget: float, smoke: bool) -> None:
    import torch
    from transformers import BertForQuestionAnswering

    shares, epochs = VARIANTS[name]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = torch.load(WORK / "rows.pt")
    kinds = data["kinds"]
    share = torch.tensor([shares.get(k, 0.0) for k in kinds])
    selected = data["keep"] & (data["hash"] < (share[data["kind"]] * 10000))
    index = torch.nonzero(selected).squeeze(1)
    counts = {k: int((data["kind"][index] == i).sum()) for i, k in enumerate(kinds)}
    ids = data["ids"][index].to(device, torch.long)
    types_ = data["types"][index].to(device, torch.long)
    lengths = data["lengths"][index].to(device)
    starts, ends = data["start"][index].to(device), data["end"][index].to(device)
    n = len(index)
    batch = 64 if not smoke else 8
    random.seed(13)
    torch.manual_seed(13)
    model = BertForQuestionAnswering.from_pretrained(
        BASE, torch_dtype=torch.float32, attn_implementation="sdpa"
    ).to(device)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=1e-4,
        weight_decay=0.01,
        fused=cuda or None,
    )
    steps_per_epoch = math.ceil(n / batch)
    plan = {"total": max(1, math.ceil(steps_per_epoch * epochs)) if not smoke else 12}
    plan["warmup"] = max(1, int(plan["total"] * 0.06))

    def schedule(step: int) -> float:
        total, warmup = plan["total"], plan["warmup"]
        return step / warmup if step < warmup else max(0.0, (total - step) / (total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(13)
    order = torch.cat(
        [torch.randperm(n, generator=generator) for _ in range(math.ceil(epochs) + 1)]
    ).to(device)
    model.train()
    began = time.time()
    timed_from = None
    loss_sum = 0.0
    step = 0
    while step < plan["total"]:
        members = order[step * batch : (step + 1) * batch]
        width = int(lengths[members].max())
        input_ids = ids[members, :width]
        mask = (torch.arange(width, device=device)[None, :] < lengths[members][:, None]).long()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(
                input_ids=input_ids,
                token_type_ids=types_[members, :width],
                attention_mask=mask,
                start_positions=starts[members],
                end_positions=ends[members],
            ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step % 100 == 0:
            loss_sum = float(loss)
        if step == 30:
            if cuda:
                torch.cuda.synchronize()
            timed_from = time.time()
        if step == 230 and not smoke:
            torch.cuda.synchronize() if cuda else None
            per_step = (time.time() - timed_from) / 200
            projected = per_step * plan["total"]
            log(
                f"{name}: {per_step * 1000:.1f} ms/step, {plan['total']} steps planned, "
                f"projected {projected:.0f} s"
            )
            if projected > budget:
                plan["total"] = max(step + 100, int(budget / per_step))
                plan["warmup"] = min(plan["warmup"], plan["total"] // 10)
                log(f"{name}: cut to {plan['total']} steps")
        if step % 1000 == 0:
            log(f"{name}: step {step}/{plan['total']} loss {loss_sum:.4f}")
    trained_s = time.time() - began
    model.eval()
    # Scores as shipped: fp16 weights read in fp32.
    model.half().float()
    scores = rescore(model, device, smoke)
    state = {
        k: v.detach().to("cpu", torch.float16).contiguous()
        for k, v in model.state_dict().items()
        if k != "bert.embeddings.word_embeddings.weight"
    }
    from safetensors.torch import save_file

    out = WORK / name
    out.mkdir(parents=True, exist_ok=True)
    first = {k: v for k, v in state.items() if not any(f"layer.{i}." in k for i in (3, 4, 5))}
    second = {k: v for k, v in state.items() if k not in first}
    save_file(first, out / f"w_{name}_a.safetensors")
    save_file(second, out / f"w_{name}_b.safetensors")
    info = {
        "variant": name,
        "shares": shares,
        "epochs_planned": epochs,
        "pairs": n,
        "pair_kinds": counts,
        "steps": step,
        "steps_per_epoch": steps_per_epoch,
        "epochs_done": round(step / steps_per_epoch, 3),
        "batch_size": batch,
        "lr": 1e-4,
        "max_length": MAX_LENGTH,
        "frozen_word_embeddings": True,
        "seed": 13,
        "train_seconds": round(trained_s, 1),
        "device": str(device),
    }
    (out / "info.json").write_text(json.dumps(info))
    (out / "scores.json").write_text(json.dumps(scores))
    log(f"{name}: done {step} steps in {trained_s:.0f} s")


def rescore(model, device, smoke: bool) -> dict:
    """Per set, per question: [score, start, end] of every plain and in-context input."""
    import torch
    from transformers import AutoTokenizer

    stub_rag()
    from rag.reader import _best_span, reader_text

    tokenizer = AutoTokenizer.from_pretrained(BASE)
    bundle = read_xz(HERE / "val.json.xz")["bundle"]
    jobs = []  # (set, row, which, k, question, title, text)
    for set_name, rows in bundle.items():
        for r, row in enumerate(rows[: 12 if smoke else None]):
            for which in ("plain", "ctx"):
                for k, (title, text) in enumerate(row[which]):
                    jobs.append((set_name, r, which, k, row["q"], title, text))
    result = {
        s: [
            {"plain": [None] * len(row["plain"]), "ctx": [None] * len(row["ctx"])}
            for row in rows[: 12 if smoke else None]
        ]
        for s, rows in bundle.items()
    }
    for begin in range(0, len(jobs), 256):
        part = jobs[begin : begin + 256]
        texts, offsets = zip(*(reader_text(j[5], j[6]) for j in part), strict=True)
        encoded = tokenizer(
            [j[4] for j in part],
            list(texts),
            truncation="longest_first",
            max_length=MAX_LENGTH,
            padding=True,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        mappings = list(encoded.pop("offset_mapping").numpy())
        sequence_ids = [encoded.sequence_ids(i) for i in range(len(part))]
        with torch.inference_mode():
            output = model(**{k: v.to(device) for k, v in encoded.items()})
        starts = output.start_logits.float().cpu().numpy()
        ends = output.end_logits.float().cpu().numpy()
        for i, job in enumerate(part):
            s = _best_span(starts[i], ends[i], mappings[i], sequence_ids[i], offsets[i])
            result[job[0]][job[1]][job[2]][job[3]] = [s.score, s.start, s.end]
    return result


# Child: cross-validate ---------------------------------------------------------------------


def records_for(scores: dict | None, smoke: bool) -> dict:
    """The shipped validation records with this variant's scores in place."""
    val = read_xz(HERE / "val.json.xz")
    records, bundle = val["records"], val["bundle"]
    if smoke:
        records = {k: v[:12] for k, v in records.items()}
    if scores is None:
        return records
    for set_name, rows in records.items():
        for r, row in enumerate(rows):
            b, got = bundle[set_name][r], scores[set_name][r]
            for k, cand in enumerate(row["cands"]):
                plain = got["plain"][b["plain_index"][k]]
                ctx = got["ctx"][k]
                cand["score"] = plain[0]
                cand["ctx"] = plain[0] if ctx[0] == NO_ROOM else ctx[0]
                cand["direct"] = cand["text"][plain[1] : plain[2]]
    return records


def cross_validate_variant(name: str, smoke: bool) -> None:
    stub_rag()
    from rag.train.calibrate import cross_validate

    if name == "shipped":
        # The shipped reader rescored in fp32 the same way (made off the device), so every
        # variant is compared at one precision; else the records as collected.
        shipped = HERE / "shipped_scores.json.xz"
        scores = read_xz(shipped) if shipped.exists() else None
    else:
        scores = json.loads((WORK / name / "scores.json").read_text())
    records = records_for(scores, smoke)
    began = time.time()
    figures = cross_validate(records, repeats=2 if smoke else 10)
    (WORK / f"cv_{name}.json").write_text(json.dumps(figures))
    log(f"cv {name}: {figures} ({time.time() - began:.0f} s)")


# Parent: selection -------------------------------------------------------------------------


def passes(v: dict, s: dict) -> bool:
    fr_ok = v["false_refusal_rate"] <= 0.055
    a = (
        v["top1_sentence_has_answer"] - s["top1_sentence_has_answer"] >= 0.015
        and v["answer_accuracy"] - s["answer_accuracy"] >= 0.010
        and v["adversarial_refused"] - s["adversarial_refused"] >= -0.01
        and v["outside_refused"] - s["outside_refused"] >= -0.01
    )
    gain = (
        v["adversarial_refused"]
        - s["adversarial_refused"]
        + v["outside_refused"]
        - s["outside_refused"]
    )
    b = (
        gain >= 0.03
        and v["adversarial_refused"] - s["adversarial_refused"] >= -0.01
        and v["outside_refused"] - s["outside_refused"] >= -0.01
        and v["answer_accuracy"] - s["answer_accuracy"] >= -0.005
        and v["top1_sentence_has_answer"] - s["top1_sentence_has_answer"] >= -0.003
    )
    return fr_ok and (a or b)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", default=None)
    parser.add_argument("--cv", default=None)
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--deadline", type=float, default=560.0)
    parser.add_argument("--variants", default="".join(VARIANTS))
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.child:
        train_variant(args.child, args.budget, args.smoke)
        return 0
    if args.cv:
        cross_validate_variant(args.cv, args.smoke)
        return 0
    began = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    encode_pool(args.smoke)
    # Whole run inside args.deadline seconds: training gets what is left before the CV slot.
    budget = min(args.budget, args.deadline - 110 - (time.time() - began))
    log(f"training budget {budget:.0f} s")
    common = [sys.executable, __file__, "--out", str(args.out), "--budget", str(budget)]
    common += ["--smoke"] if args.smoke else []
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2"}
    cv_shipped = subprocess.Popen([*common, "--cv", "shipped"], env=env)
    children = {v: subprocess.Popen([*common, "--child", v], env=env) for v in args.variants}
    for v, child in children.items():
        child.wait()
        log(f"variant {v} exited {child.returncode}")
    cvs = {
        v: subprocess.Popen([*common, "--cv", v], env=env)
        for v in args.variants
        if (WORK / v / "scores.json").exists()
    }
    log("training done; cross-validating")
    for child in [cv_shipped, *cvs.values()]:
        try:
            child.wait(timeout=max(5.0, args.deadline - 25 - (time.time() - began)))
        except subprocess.TimeoutExpired:
            child.kill()
            log("a cross-validation ran out of time")
    shipped_file = WORK / "cv_shipped.json"
    shipped = json.loads(shipped_file.read_text()) if shipped_file.exists() else None
    summary = {"shipped": shipped, "variants": {}, "seconds": 0.0}
    all_scores = {}
    for v in cvs:
        info = json.loads((WORK / v / "info.json").read_text())
        cv_file = WORK / f"cv_{v}.json"
        info["cv"] = json.loads(cv_file.read_text()) if cv_file.exists() else None
        info["passes"] = bool(info["cv"] and shipped and passes(info["cv"], shipped))
        summary["variants"][v] = info
        all_scores[v] = json.loads((WORK / v / "scores.json").read_text())
    fallback = "DECBA"
    ranked = sorted(
        summary["variants"],
        key=lambda v: (
            summary["variants"][v]["passes"],
            (summary["variants"][v]["cv"] or {}).get("answer_accuracy", 0.0),
            -fallback.index(v),
        ),
        reverse=True,
    )
    summary["returned"] = ranked[:2]
    summary["seconds"] = round(time.time() - began, 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    with lzma.open(args.out / "scores.json.xz", "wt") as f:
        json.dump(all_scores, f)
    for v in ranked[:2]:
        for part in ("a", "b"):
            src = WORK / v / f"w_{v}_{part}.safetensors"
            (args.out / src.name).write_bytes(src.read_bytes())
    log(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
