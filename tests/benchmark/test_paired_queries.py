"""benchmarks/paired_queries.py: per-query wins and losses between two cells, and the sign test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "paired_queries.py"
spec = importlib.util.spec_from_file_location("paired_queries", SCRIPT)
paired = importlib.util.module_from_spec(spec)
spec.loader.exec_module(paired)


def _cell(path: Path, ranks: dict[str, int]) -> Path:
    names = ["a", "b", "c", "d", "e", "f"]
    queries = [{"image_id": q, "truth": "t", "ranked": names[:r] + ["t"] + names[r:]} for q, r in ranks.items()]
    queries.append({"image_id": "new", "truth": "new_individual", "ranked": names})  # unknowns do not count
    path.write_text(json.dumps({"queries": queries}))
    return path


def test_wins_losses_and_sign_test(tmp_path):
    base = paired.truth_ranks(_cell(tmp_path / "base.json", {"q1": 0, "q2": 3, "q3": 0, "q4": 6}))
    other = paired.truth_ranks(_cell(tmp_path / "other.json", {"q1": 1, "q2": 0, "q3": 0, "q4": 2}))
    assert "new" not in base
    assert paired.compare(base, other, 1) == (1, 1)  # q2 enters the top-1, q1 leaves it
    assert paired.compare(base, other, 5) == (1, 0)  # q4 enters the top-5
    assert paired.sign_test(1, 1) == 1.0
    assert abs(paired.sign_test(0, 6) - 2 / 64) < 1e-12
    assert paired.sign_test(9, 11) > 0.5
