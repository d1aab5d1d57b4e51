"""Which retrieved sentences the reader reads: the lexical feature of the selection.

The reader reads a dozen or so of the sentences of the retrieved chunks (its time is the cost).
They used to be the nearest to the question by embedding alone; a sentence of code
(``>>> new_v = v.next_minor()``) or a terse one sits far from a question in embedding space
while sharing its words. ``rag.reader.Calibration.selection_score`` weighs the cosine with the
share of the question's terms a sentence holds (``term_overlaps``), its chunk's place and its
length, as fitted on the validation articles by ``rag.train.selection``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from rag.terms import terms

_WORD = re.compile(r"\w+")
_IDENTIFIER_PARTS = re.compile(r"_|(?<=[a-z])(?=[A-Z])")


def term_set(text: str) -> set[str]:
    """``text``'s terms (``rag.terms.terms``), with each identifier's parts as terms too
    (``next_minor`` also gives "next" and "minor"; ``PureRandomPolicy`` "pure", "random",
    "policy"; stemmed as all terms are)."""
    found = set(terms(text))
    for word in _WORD.findall(text):
        parts = [part for part in _IDENTIFIER_PARTS.split(word) if len(part) > 1]
        if len(parts) > 1:
            found.update(terms(" ".join(parts)))
    return found


def term_overlaps(question: str, texts: Sequence[str]) -> list[float]:
    """For each of ``texts``: the share of the question's terms it holds, each term weighted by
    its rarity among ``texts`` (an IDF over the sentences the question retrieved)."""
    wanted = term_set(question)
    held = [term_set(text) for text in texts]
    n = len(texts)
    weights = {
        term: math.log(1 + n / (1 + sum(term in found for found in held))) for term in wanted
    }
    total = sum(weights.values())
    if not total:
        return [0.0] * n
    return [sum(weights[term] for term in wanted if term in found) / total for found in held]
