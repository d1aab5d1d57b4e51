"""The k best BM25 scores of a query: exhaustively over a score array (``top_k``), or exactly
without scoring every chunk, by MaxScore-style pruning (``pruned_top``).

Both rank by score, best first, ties by chunk position (lowest first), so the two agree to
the index, ties included. ``pruned_top`` works on a query's postings (``QueryTerm``; each term's
postings sorted by chunk position within each segment) in plain numpy: a MaxScore/WAND library
(PISA, Lucene's block-max) would prune harder but brings a native dependency and its own index
format, while the case that matters here (a short query against a big, static base segment) is
a few vectorised lookups.

MaxScore: rank the query's terms by the most they add to any chunk's score (their bound). The
lowest-bound terms whose bounds sum to ``sigma`` are *non-essential*: a chunk having none of the
other (*essential*) terms scores at most ``sigma``. So if some k chunks are known to score more
than ``sigma`` (``floor``, a lower bound of the k-th best score), only chunks having an
essential term can be in the top k: their sums over the essential terms' postings are
accumulated, and the non-essential terms are looked up (binary search) for those of them that
could still reach the k-th best. The floor comes from fully scoring a few chunks having the
highest-bound terms; where it leaves most of the query's postings essential, pruning would
cost more than scoring every chunk and the caller does that instead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TOP_SAMPLE = 50_000
# Costs, relative to adding one posting to a full score array: scoring every chunk adds each
# of the query's postings and scans every chunk once (1 / CHUNK_COST each); pruning costs
# about POSTING_COST per essential posting. Pruning is given up (the caller scores every
# chunk) once it would cost more.
CHUNK_COST = 10
POSTING_COST = 4
# Relative slack on every comparison of bounds with sums: covers the rounding of float32 sums
# of a query's terms (a few times 2**-24 each) many times over.
SLACK = 1e-4
# A row this many times shorter than the chunks to look up is spread over an array of every
# chunk instead of binary-searched.
SPREAD = 2
# The chunks first touched (they have the highest-bound terms) that the floor is estimated
# from, per chunk asked for: at most PROBE, estimated once PROBE_FULL are found.
PROBE = 40
PROBE_FULL = 20


def rows_sorted(indices: np.ndarray, indptr: np.ndarray, block: int = 1 << 22) -> bool:
    """Are the column indices of every CSR row strictly increasing? (In blocks: no copy of a
    large index.)"""
    for lo in range(0, max(len(indices) - 1, 0), block):
        piece = indices[lo : lo + block + 1]
        drops = np.flatnonzero(piece[1:] <= piece[:-1]) + lo + 1  # must all be row starts
        at = np.minimum(np.searchsorted(indptr, drops), len(indptr) - 1)
        if not np.array_equal(indptr[at], drops):
            return False
    return True


def top_k(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k highest positive scores, best first, ties by index.

    Only positive scores are ranked (a partition of a mostly-zero array is slow: ties), and
    when many chunks match, the k-th best score of an evenly spaced sample of the matches,
    a lower bound of the k-th best overall, leaves a few thousand candidates to rank."""
    if mask is not None:
        scores = np.where(mask, scores, 0.0)
    candidates = np.flatnonzero(scores > 0)
    k = min(k, len(candidates))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if len(candidates) >= 4 * TOP_SAMPLE:
        sample = scores[candidates[:: len(candidates) // TOP_SAMPLE]]
        floor = np.partition(sample, len(sample) - k)[len(sample) - k]
        candidates = candidates[scores[candidates] >= floor]
    return best(candidates, scores[candidates], k)


def best(positions: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """The k positions of highest value, best first, ties by position (``positions`` ascending)."""
    if len(positions) > k:
        kth = np.partition(values, len(values) - k)[len(values) - k]
        keep = values > kth
        ties = np.flatnonzero(values == kth)[: k - int(keep.sum())]
        keep[ties] = True
        positions, values = positions[keep], values[keep]
    return positions[np.argsort(-values, kind="stable")]


@dataclass(frozen=True)
class Row:
    """One term's postings in one segment: chunk positions local to the segment (ascending) and
    the scores, which count ``weight`` times (the live IDF over the segment's)."""

    docs: np.ndarray
    data: np.ndarray
    weight: float
    offset: int  # the segment's first chunk position

    def values(self) -> np.ndarray:
        """Every posting's score (float32, computed as the exhaustive scorer does)."""
        return self.data * self.weight

    def lookup(self, positions: np.ndarray) -> np.ndarray:
        """The score this row gives each chunk position (0 where it has none), float32: by
        binary search, or for many positions against a short row by spreading the row's
        scores over a per-thread array of every chunk."""
        if not len(positions):
            return np.zeros(0, dtype=np.float32)
        if len(self.docs) <= SPREAD * len(positions):
            docs = self.docs + np.int32(self.offset)
            side = _scratch("side", max(int(docs[-1]), int(positions.max())) + 1)
            side[docs] = self.values()
            try:
                return side[positions]
            finally:
                side[docs] = 0.0
        local = positions - np.int32(self.offset)
        at = np.minimum(np.searchsorted(self.docs, local), len(self.docs) - 1)
        found = self.docs[at] == local
        out = np.zeros(len(positions), dtype=np.float32)
        out[found] = self.data[at[found]] * self.weight
        return out


@dataclass(frozen=True)
class QueryTerm:
    """A distinct term of a query: its rows (one per segment it has postings in), how often the
    query repeats it, and the most it adds to any live chunk's score (``bound``)."""

    rows: tuple[Row, ...]
    count: int
    bound: float  # per occurrence

    @property
    def length(self) -> int:
        return sum(len(row.docs) for row in self.rows)

    @property
    def reach(self) -> float:
        """The most all its occurrences add to a chunk's score."""
        return self.bound * self.count

    def lookup(self, positions: np.ndarray) -> np.ndarray:
        """What one occurrence of the term adds to each chunk (float32)."""
        out = np.zeros(len(positions), dtype=np.float32)
        for row in self.rows:
            out += row.lookup(positions)  # a chunk is in one segment: one row adds to it
        return out


def exact_scores(
    terms: Sequence[QueryTerm], order: Sequence[int], positions: np.ndarray
) -> np.ndarray:
    """The chunks' scores as the exhaustive scorer computes them: the terms' contributions in
    the query's order (``order``: an index into ``terms`` per occurrence) summed in float64,
    then rounded to float32, so that equal inputs give bit-equal scores."""
    contributions = {i: terms[i].lookup(positions) for i in set(order)}
    total = np.zeros(len(positions), dtype=np.float64)
    for i in order:
        total += contributions[i]
    return total.astype(np.float32)


def pruned_top(
    terms: Sequence[QueryTerm],
    order: Sequence[int],
    k: int,
    n_chunks: int,
    keep: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, np.ndarray] | None:
    """The positions and scores of the k best chunks (those with a positive score, and true in
    every array of ``keep``), exactly as ``top_k`` over every chunk's score ranks them; None
    when pruning would not save work (the caller then scores every chunk).

    Terms are added, highest bound first, to a running sum over the chunks having them. Once
    ``PROBE_FULL * k`` chunks have some, the full scores of the 2k best of them give a lower bound
    of the k-th best score (``floor``), which says how many terms must be essential; the
    terms left are not added, only looked up for the chunks that could still reach it."""
    if k <= 0 or not terms:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    ranked = sorted(terms, key=lambda term: (-term.reach, term.length))
    reach = np.array([term.reach for term in ranked], dtype=np.float64)
    sigma = np.append(np.cumsum(reach[::-1])[::-1], 0.0)  # sigma[e]: the bound of ranked[e:]
    lengths = np.cumsum([term.length for term in ranked])
    budget = (lengths[-1] + n_chunks / CHUNK_COST) / POSTING_COST
    with _Sum(n_chunks, keep, PROBE * k) as total:
        essential, floor = 0, 0.0
        while essential < len(ranked) and not floor > sigma[essential] * (1 + SLACK):
            if essential and lengths[essential] > budget:
                return None
            total.add(ranked[essential])
            essential += 1
            if not floor and essential < len(ranked) and len(total.probe) >= PROBE_FULL * k:
                floor = _floor(total, ranked[essential:], k)
                needed = int(np.argmax(sigma * (1 + SLACK) < floor)) if floor else 0
                if needed > essential and lengths[needed - 1] > budget:
                    return None
        positions, partial = total.candidates(floor, sigma[essential])
    positions = _contenders(positions, partial, ranked, essential, sigma, k)
    scores = exact_scores(terms, order, positions)
    if essential < len(ranked) and not _kth(scores, k) > sigma[essential] * (1 + SLACK):
        return None  # not expected: the floor was below the k-th best score
    chosen = best(positions, scores, k)
    return chosen.astype(np.int64), scores[np.searchsorted(positions, chosen)]


def _floor(total: _Sum, rest: Sequence[QueryTerm], k: int) -> float:
    """A lower bound of the k-th best score: the k-th best full score (the sum so far plus the
    terms in ``rest``) of the 2k probed chunks with the highest sums (0 when fewer than k)."""
    probe = total.probe
    if len(probe) < k:
        return 0.0
    sums = total.total[probe]
    if len(probe) > 2 * k:
        seed = np.argpartition(sums, len(sums) - 2 * k)[len(sums) - 2 * k :]
        probe, sums = probe[seed], sums[seed]
    full = sums.astype(np.float64)
    for term in rest:
        full += term.lookup(probe) * np.float32(term.count)
    return _kth(full, k) * (1 - SLACK)


def _kth(values: np.ndarray, k: int) -> float:
    """The k-th highest value (0 when there are fewer than k)."""
    if len(values) < k:
        return 0.0
    return float(np.partition(values, len(values) - k)[len(values) - k])


def _contenders(
    positions: np.ndarray,
    partial: np.ndarray,
    ranked: Sequence[QueryTerm],
    essential: int,
    sigma: np.ndarray,
    k: int,
) -> np.ndarray:
    """Of the chunks at ``positions`` (those having an essential term; ``partial``: their sums
    over the essential terms), those (ascending) that could be among the k best of them. The
    other terms are added in turn; a chunk is dropped once its sum plus the bound of the terms
    still to add falls below the k-th best sum so far (a lower bound of the k-th best)."""
    for e in range(essential, len(ranked) + 1):
        if len(positions) > k:
            least = _kth(partial, k) * (1 - SLACK)
            viable = partial + sigma[e] * (1 + SLACK) >= least
            positions, partial = positions[viable], partial[viable]
        if e < len(ranked):
            term = ranked[e]
            partial += term.lookup(positions) * np.float32(term.count)
    return np.sort(positions)


_SCRATCH = threading.local()


def _scratch(name: str, size: int) -> np.ndarray:
    """This thread's float32 array ``name`` of at least ``size`` zeros (callers zero what they
    set before returning)."""
    array = getattr(_SCRATCH, name, None)
    if array is None or len(array) < size:
        array = np.zeros(max(size, 2 * len(array) if array is not None else 0), dtype=np.float32)
        setattr(_SCRATCH, name, array)
    return array


class _Sum:
    """A running sum of terms' scores per chunk in a per-thread array of every chunk (zeroed
    again on leaving the ``with`` block: no allocation of the collection's size per query),
    the chunks it has touched, and the first ``probe`` of them in ``keep``. float32: the sums
    only prune (``SLACK``)."""

    def __init__(self, n_chunks: int, keep: Sequence[np.ndarray], probe: int):
        self.total = _scratch("total", n_chunks)
        self.keep = keep
        self.room = probe
        self.parts: list[np.ndarray] = []
        self.probe = np.zeros(0, dtype=np.int32)

    def __enter__(self) -> _Sum:
        return self

    def __exit__(self, *exc: object) -> None:
        for docs in self.parts:
            self.total[docs] = 0.0

    def add(self, term: QueryTerm) -> None:
        """Add every occurrence of ``term`` to the chunks having it."""
        for row in term.rows:
            docs = row.docs + np.int32(row.offset) if row.offset else row.docs
            values = row.values() if term.count == 1 else row.values() * np.float32(term.count)
            sums = self.total[docs]
            # A chunk is new where its sum is still 0: every posting's score is positive.
            new = docs[sums == 0] if self.parts else docs
            self.parts.append(new)
            self.total[docs] = sums + values
            room = self.room - len(self.probe)
            if room > 0:
                self.probe = np.concatenate([self.probe, self._kept(new[: 4 * room])[:room]])

    def _kept(self, positions: np.ndarray) -> np.ndarray:
        for mask in self.keep:
            positions = positions[mask[positions]]
        return positions

    def candidates(self, floor: float, rest: float) -> tuple[np.ndarray, np.ndarray]:
        """The chunks touched (in ``keep``) whose sum plus ``rest`` (the bound of the terms
        not added) reaches ``floor``, and their sums."""
        positions = np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.int32)
        sums = self.total[positions]
        viable = sums + rest * (1 + SLACK) >= floor
        positions, sums = positions[viable], sums[viable]
        positions = self._kept(positions)
        return positions, self.total[positions]
