"""A run's outputs land as a set: staged, swapped in under a marker, stale leftovers cleaned."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reid_engine.outputs import run_outputs
from reid_engine.outputs.run_outputs import INCOMPLETE, clean_stale_outputs, write_run_outputs
from reid_engine.records import Prediction
from reid_engine.registry.profiles import resolve_profile
from reid_engine.runs import RunOptions, RunResult


def _result(label: str) -> RunResult:
    p = Prediction(image_id=f"q-{label}", path=f"/photos/{label}.jpg", prediction="seal_a", score=0.9,
                   decision="known", candidates=())
    return RunResult([p], [], {"queries": 1}, {"total_s": 1.0}, {"queries": 1})


def _options(out, report: bool = True) -> RunOptions:
    return RunOptions(resolve_profile("generic", None)[0], out.parent / "g.db", out, write_report=report)


def _set_of(out) -> set[str]:
    return {p.name for p in out.iterdir()}


def test_outputs_replace_an_earlier_set_whole(tmp_path):
    out = tmp_path / "out"
    write_run_outputs(_result("first"), _options(out))
    assert _set_of(out) == {"predictions.csv", "ranking.csv", "errors.csv", "report.html", "summary.json"}
    write_run_outputs(_result("second"), _options(out, report=False))
    assert "q-second" in (out / "predictions.csv").read_text()
    assert not (out / "report.html").exists()  # the first run's report is not left beside the second's tables


def test_a_run_killed_while_writing_leaves_the_earlier_set_untouched(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_run_outputs(_result("first"), _options(out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_outputs, "write_json", killed)  # summary.json is written last
    with pytest.raises(KeyboardInterrupt):
        write_run_outputs(_result("second"), _options(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_run_killed_while_swapping_the_set_in_leaves_an_unmistakable_marker(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_run_outputs(_result("first"), _options(out))
    real, moved = os.replace, []

    def replace_then_die(src, dst):  # killed after the first output moved into ``out``
        if moved:
            raise KeyboardInterrupt
        real(src, dst)
        if Path(dst).parent == out and Path(dst).name != INCOMPLETE:
            moved.append(dst)

    monkeypatch.setattr(run_outputs.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_run_outputs(_result("second"), _options(out))
    assert "may come\nfrom two different runs" in (out / INCOMPLETE).read_text()
    monkeypatch.setattr(run_outputs.os, "replace", real)
    write_run_outputs(_result("third"), _options(out))  # the next complete run removes it
    assert not (out / INCOMPLETE).exists()
    assert json.loads((out / "summary.json").read_text())["metrics"] == {"queries": 1}


def test_what_a_killed_run_left_is_cleaned_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    (out / ".reid-engine-staging-123").mkdir(parents=True)
    (out / ".reid-engine-staging-123" / "predictions.csv").write_text("x")
    (out / ".predictions.csv.ab12cd").write_text("half a table")
    (out / ".report.html.999.tmp").write_text("<html")
    (out / "my-notes.txt").write_text("the user's own file")
    (out / ".hidden-user-file").write_text("also theirs")
    removed = {p.name for p in clean_stale_outputs(out)}
    assert removed == {".reid-engine-staging-123", ".predictions.csv.ab12cd", ".report.html.999.tmp"}
    assert _set_of(out) == {"my-notes.txt", ".hidden-user-file"}
