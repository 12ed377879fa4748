"""--compare: a change counts only beyond its stated noise."""

from __future__ import annotations

import json

import pytest

from reid_engine.benchmark.compare import compare, describe, load_results
from reid_engine.errors import UsageError


def _cell(hits: list[bool], baks: float = 0.5, key: str = "d / p / closed") -> dict:
    queries = [{"image_id": f"q{i}", "truth": "a", "ranked": ["a", "b"] if h else ["b", "a"], "score": 0.5}
               for i, h in enumerate(hits)]
    top1 = sum(hits) / len(hits)
    return {"key": key, "queries": queries,
            "metrics": {"top1": top1, "top5": 1.0, "mAP": (top1 + 1) / 2, "BAKS": baks, "BAUS": 0.5, "geo_mean": 0.5,
                        "n_known_queries": len(hits), "n_unknown_queries": 40, "n_queries": len(hits) + 40}}


def _verdicts(old, new):
    return {c.metric: c.verdict for c in compare({"cells": [old]}, {"cells": [new]})}


def test_paired_change_beyond_noise_is_better_or_worse():
    old = _cell([True] * 20 + [False] * 80)
    new = _cell([True] * 60 + [False] * 40)
    assert _verdicts(old, new)["top1"] == "better"
    assert _verdicts(new, old)["top1"] == "worse"
    assert _verdicts(old, old)["top1"] == "same"


def test_a_small_change_is_within_noise():
    old = _cell([True] * 30 + [False] * 70)
    new = _cell([True] * 31 + [False] * 69)
    assert _verdicts(old, new)["top1"] == "same"


def test_binomial_noise_for_baks():
    assert _verdicts(_cell([True] * 50, baks=0.50), _cell([True] * 50, baks=0.52))["BAKS"] == "same"
    assert _verdicts(_cell([True] * 50, baks=0.10), _cell([True] * 50, baks=0.90))["BAKS"] == "better"


def test_describe_counts_and_load_results_refuses_other_files(tmp_path):
    old, new = _cell([False] * 50), _cell([True] * 50)
    lines = describe(compare({"cells": [old]}, {"cells": [new]}), {"git_commit": "a"}, {"git_commit": "b"})
    assert "paired" in lines[1] and lines[-1].startswith("2 better")  # top-1 and mAP; top-5 unchanged
    (tmp_path / "x.json").write_text(json.dumps({"not": "results"}))
    with pytest.raises(UsageError, match="not a reid-engine benchmark"):
        load_results(tmp_path / "x.json")
    with pytest.raises(UsageError, match="not found"):
        load_results(tmp_path / "missing.json")
