"""A listwise ranking term for reader training (``python -m rag.train.reader --listwise W``).

The reader is trained pointwise: each (question, sentence) pair on its own, span or "no answer".
Answering, though, ranks the sentences of one question against each other. This term adds that
comparison: the pairs of one question that share a batch compete in a softmax over their
answer scores (best start plus best end logit inside the sentence, minus the no-answer ones:
what ``rag.reader.Reader.score`` ranks by, without the span-order constraint), with the
answering sentence as the target. Batches keep a question's pairs together
(``grouped_order``)."""

from __future__ import annotations

import random
from typing import Any


def grouped_order(groups: list[int], generator: random.Random) -> list[int]:
    """Row indices with each group's rows together, groups (and rows within) shuffled."""
    members: dict[int, list[int]] = {}
    for row, group in enumerate(groups):
        members.setdefault(group, []).append(row)
    keys = list(members)
    generator.shuffle(keys)
    order = []
    for key in keys:
        rows = members[key]
        generator.shuffle(rows)
        order.extend(rows)
    return order


def answer_scores(start_logits: Any, end_logits: Any, token_type_ids: Any, attention_mask: Any):
    """Per row: the best start and best end logit over the sentence's tokens (the second
    segment) minus the [CLS] (no answer) ones."""
    inside = (token_type_ids == 1) & (attention_mask == 1)
    low = -1e4
    best_start = start_logits.masked_fill(~inside, low).max(dim=1).values
    best_end = end_logits.masked_fill(~inside, low).max(dim=1).values
    return best_start + best_end - start_logits[:, 0] - end_logits[:, 0]


def listwise_loss(scores: Any, groups: Any, positive: Any):
    """Mean cross-entropy of the answering row over each group of the batch that holds exactly
    one answering row and at least one other; None when no group does."""
    import torch

    terms = []
    for group in groups.unique():
        rows = (groups == group).nonzero().squeeze(1)
        answering = positive[rows].nonzero().squeeze(1)
        if len(rows) > 1 and len(answering) == 1:
            terms.append(torch.nn.functional.cross_entropy(scores[rows][None], answering))
    return torch.stack(terms).mean() if terms else None
