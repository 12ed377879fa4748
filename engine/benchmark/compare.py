"""What got better or worse between two benchmark results, beyond noise.

Cells are matched by (dataset, profile, split). Noise is stated per metric:

- top-1, top-5, mAP: when both cells ranked the same queries the comparison is *paired*: the
  per-query differences (hit or not; 1/rank) have a mean and a 95 % interval
  ``1.96 · sd / √n``; a change counts when the interval excludes 0;
- BAKS, BAUS, geo-mean: a binomial interval per cell, ``1.96 · √(p(1-p)/n)`` with n the known
  (BAKS), unknown (BAUS) or all (geo-mean) queries, combined as ``√(a² + b²)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_engine.errors import UsageError
from reid_engine.records import NEW_INDIVIDUAL

Z = 1.96
PAIRED = ("top1", "top5", "mAP")
BINOMIAL = {"BAKS": "n_known_queries", "BAUS": "n_unknown_queries", "geo_mean": "n_queries"}


@dataclass(frozen=True)
class Change:
    key: str
    metric: str
    old: float
    new: float
    noise: float  # half-width of the 95 % interval of the difference
    paired: bool

    @property
    def diff(self) -> float:
        return self.new - self.old

    @property
    def verdict(self) -> str:
        if not (math.isfinite(self.diff) and math.isfinite(self.noise)):
            return "n/a"
        if abs(self.diff) <= self.noise or self.diff == 0:
            return "same"
        return "better" if self.diff > 0 else "worse"


def load_results(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--compare {path}: not found (give a results.json a benchmark wrote)") from None
    except ValueError as exc:
        raise UsageError(f"--compare {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or "cells" not in data:
        raise UsageError(f"--compare {path}: not a reid-engine benchmark results.json")
    return data


def truth_ranks(cell: dict) -> dict[str, int | None]:
    """image id -> 0-based rank of the true identity among a cell's ranked answers (None: not
    ranked), for its queries of known individuals."""
    return {q["image_id"]: (q["ranked"].index(q["truth"]) if q["truth"] in q["ranked"] else None)
            for q in cell["queries"] if q["truth"] not in (None, NEW_INDIVIDUAL)}


def _per_query(cell: dict, metric: str) -> dict[str, float]:
    out = {}
    for image_id, rank in truth_ranks(cell).items():
        if metric == "top1":
            out[image_id] = float(rank == 0)
        elif metric == "top5":
            out[image_id] = float(rank is not None and rank < 5)
        else:
            out[image_id] = 0.0 if rank is None else 1.0 / (rank + 1)
    return out


def _binomial(p: float, n: int) -> float:
    return Z * math.sqrt(max(p * (1 - p), 0.0) / n) if n and math.isfinite(p) else float("nan")


def compare(old: dict, new: dict) -> list[Change]:
    """Every metric of every cell present in both results."""
    before = {c["key"]: c for c in old["cells"]}
    changes = []
    for cell in new["cells"]:
        prev = before.get(cell["key"])
        if prev is None:
            continue
        for metric in PAIRED:
            a, b = _per_query(prev, metric), _per_query(cell, metric)
            o, n = prev["metrics"].get(metric, float("nan")), cell["metrics"].get(metric, float("nan"))
            if a and set(a) == set(b):
                d = np.array([b[k] - a[k] for k in sorted(a)])
                noise = Z * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
                changes.append(Change(cell["key"], metric, float(np.mean(list(a.values()))),
                                      float(np.mean(list(b.values()))), noise, True))
            else:
                na, nb = prev["metrics"].get("n_known_queries", 0), cell["metrics"].get("n_known_queries", 0)
                changes.append(Change(cell["key"], metric, o, n, math.hypot(_binomial(o, na), _binomial(n, nb)), False))
        for metric, count in BINOMIAL.items():
            o, n = prev["metrics"].get(metric, float("nan")), cell["metrics"].get(metric, float("nan"))
            if not (math.isfinite(o) and math.isfinite(n)):
                continue
            noise = math.hypot(_binomial(o, prev["metrics"].get(count, 0)), _binomial(n, cell["metrics"].get(count, 0)))
            changes.append(Change(cell["key"], metric, o, n, noise, False))
    return changes


def describe(changes: list[Change], old: dict, new: dict) -> list[str]:
    """Lines for the terminal: every change, then the verdict."""
    def commit(results: dict) -> str:
        return results.get("git_commit") or "an unrecorded commit (not run from a git checkout)"

    lines = [f"compared with {commit(old)} (old) → {commit(new)} (new); noise = 95 % interval "
             "of the difference (paired over the same queries where marked 'paired', else binomial)"]
    for c in changes:
        lines.append(f"  {c.key:<50} {c.metric:<9} {c.old:.3f} → {c.new:.3f} ({c.diff:+.3f} ± {c.noise:.3f}"
                     f"{', paired' if c.paired else ''}) {c.verdict}")
    worse = [c for c in changes if c.verdict == "worse"]
    better = [c for c in changes if c.verdict == "better"]
    lines.append(f"{len(better)} better, {len(worse)} worse beyond noise, "
                 f"{len(changes) - len(better) - len(worse)} within noise or not comparable")
    return lines
