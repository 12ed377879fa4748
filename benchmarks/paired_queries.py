"""Which queries two benchmark cells disagree on: a paired comparison of per-query ranks.

    python benchmarks/paired_queries.py BASE/cell.json OTHER/cell.json [MORE/cell.json ...]

With 126 queries (nyala-dev closed) one top-1 figure moves by ±0.04 from noise alone, so a
change is read off the queries it wins and loses: every OTHER cell against BASE, the queries
whose truth enters / leaves the top-1 and the top-5, and a two-sided sign test over the top-1
flips (the chance of a split this lopsided if neither cell were better). ``cell.json`` is what
``reid-engine benchmark`` leaves in DIR/cells/DATASET/PROFILE/SPLIT/.
"""

from __future__ import annotations

import argparse
import json
from math import comb
from pathlib import Path

from reid_engine.benchmark import compare as compare_results


def truth_ranks(cell: Path) -> dict[str, int]:
    """image id -> 0-based rank of the true identity among the cell's ranked answers (99: not ranked)."""
    ranks = compare_results.truth_ranks(json.loads(Path(cell).read_text()))
    return {image_id: 99 if rank is None else rank for image_id, rank in ranks.items()}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided binomial sign test p-value of ``wins`` against ``losses`` (ties left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(0, min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare(base: dict[str, int], other: dict[str, int], k: int) -> tuple[int, int]:
    """(queries entering the top-k, queries leaving it) going from ``base`` to ``other``."""
    shared = base.keys() & other.keys()
    return (sum(1 for q in shared if base[q] >= k > other[q]), sum(1 for q in shared if base[q] < k <= other[q]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("others", type=Path, nargs="+")
    args = parser.parse_args()
    base = truth_ranks(args.base)
    for path in args.others:
        other = truth_ranks(path)
        won1, lost1 = compare(base, other, 1)
        won5, lost5 = compare(base, other, 5)
        top1 = sum(r == 0 for r in other.values()) / max(1, len(other))
        base1 = sum(r == 0 for r in base.values()) / max(1, len(base))
        print(f"{path}: top-1 {top1:.3f} vs {base1:.3f}; top-1 +{won1} -{lost1} (sign test p {sign_test(won1, lost1):.2f}); "
              f"top-5 +{won5} -{lost5}")


if __name__ == "__main__":
    main()
