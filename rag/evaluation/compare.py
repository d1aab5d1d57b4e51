"""Comparing two runs, and the --fail-under/--fail-over gates."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rag.evaluation.metrics import LOWER_IS_BETTER, METRICS
from rag.evaluation.questions import EvaluationError

if TYPE_CHECKING:
    pass


# Comparing runs and gating ----------------------------------------------------------------------


def load_run(path: Path | str) -> dict[str, Any]:
    """A previous ``rag eval --json`` file (checked to hold metrics and items)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluationError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise EvaluationError(f"{path}: not a readable JSON file: {error}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("metrics"), dict)
        or not isinstance(data.get("items"), list)
    ):
        raise EvaluationError(f"{path}: not a 'rag eval --json' result (no metrics/items)")
    return data


@dataclass
class MetricDelta:
    metric: str
    previous: float | None
    current: float | None

    @property
    def delta(self) -> float | None:
        if self.previous is None or self.current is None:
            return None
        return round(self.current - self.previous, 4)

    @property
    def verdict(self) -> Literal["better", "worse", "same", "n/a"]:
        delta = self.delta
        if delta is None:
            return "n/a"
        if abs(delta) < 1e-9 or self.metric == "n_questions":
            return "same" if abs(delta) < 1e-9 else "n/a"
        improved = delta < 0 if self.metric in LOWER_IS_BETTER else delta > 0
        return "better" if improved else "worse"


@dataclass
class Comparison:
    """Metric deltas and items whose pass/fail flipped between two runs."""

    deltas: list[MetricDelta]
    now_failing: list[tuple[str, str]]  # (id, question)
    now_passing: list[tuple[str, str]]
    only_previous: list[str]
    only_current: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": {
                d.metric: {"previous": d.previous, "current": d.current, "delta": d.delta}
                for d in self.deltas
            },
            "now_failing": [item_id for item_id, _ in self.now_failing],
            "now_passing": [item_id for item_id, _ in self.now_passing],
            "only_previous": self.only_previous,
            "only_current": self.only_current,
        }


def compare_runs(previous: dict[str, Any], current: dict[str, Any]) -> Comparison:
    """Compare two ``rag eval --json`` objects (previous first)."""
    deltas = [
        MetricDelta(metric, previous["metrics"].get(metric), current["metrics"].get(metric))
        for metric in METRICS
    ]
    before = {item["id"]: item for item in previous["items"] if isinstance(item, dict)}
    after = {item["id"]: item for item in current["items"] if isinstance(item, dict)}
    now_failing, now_passing = [], []
    for item_id, item in after.items():
        old = before.get(item_id)
        if old is None or bool(old.get("passed")) == bool(item.get("passed")):
            continue
        entry = (item_id, str(item.get("question", "")))
        (now_passing if item.get("passed") else now_failing).append(entry)
    return Comparison(
        deltas,
        now_failing,
        now_passing,
        only_previous=[item_id for item_id in before if item_id not in after],
        only_current=[item_id for item_id in after if item_id not in before],
    )


@dataclass(frozen=True)
class Bound:
    """A CI gate: ``metric`` must be at least (``under``) or at most (``over``) ``value``."""

    metric: str
    value: float
    kind: Literal["under", "over"]


def parse_bounds(specs: Iterable[str], kind: Literal["under", "over"]) -> list[Bound]:
    """Parse 'METRIC=VALUE' (comma-separated lists too). Raises ValueError with the reason."""
    bounds = []
    for spec in specs:
        for part in filter(None, (piece.strip() for piece in spec.split(","))):
            metric, sep, raw = part.partition("=")
            metric = metric.strip()
            if not sep:
                raise ValueError(f"{part!r}: expected METRIC=VALUE, e.g. answer_accuracy=0.8")
            if metric not in METRICS:
                raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{part!r}: {raw.strip()!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"{part!r}: the bound must be a finite number")
            if kind == "under" and metric in LOWER_IS_BETTER:
                raise ValueError(
                    f"{metric} is lower-is-better: use --fail-over {metric}={raw.strip()}"
                )
            if kind == "over" and metric not in LOWER_IS_BETTER:
                raise ValueError(
                    f"{metric} is higher-is-better: use --fail-under {metric}={raw.strip()}"
                )
            bounds.append(Bound(metric, value, kind))
    return bounds


def check_bounds(metrics: dict[str, Any], bounds: Iterable[Bound]) -> list[str]:
    """One message per violated bound; a null metric violates any bound on it."""
    problems = []
    for bound in bounds:
        value = metrics.get(bound.metric)
        if value is None:
            problems.append(f"{bound.metric} is null (no eligible items), cannot check it")
        elif bound.kind == "under" and value < bound.value:
            problems.append(f"{bound.metric} = {value:g} is below {bound.value:g}")
        elif bound.kind == "over" and value > bound.value:
            problems.append(f"{bound.metric} = {value:g} is above {bound.value:g}")
    return problems
