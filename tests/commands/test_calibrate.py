"""``reid-engine calibrate`` end to end, its open-set split, and too-little-data fallback."""

from __future__ import annotations

import json

import pytest

from reid_engine.calibration.open_split import NotEnoughData, make_open_split
from tests.conftest import run_cli


def test_open_split_is_seeded_and_identity_disjoint():
    identities = [f"id{i // 3}" for i in range(30)] + ["solo1", "solo2"]
    a = make_open_split(identities, 0.2, seed=1)
    assert a == make_open_split(identities, 0.2, seed=1)
    unknown = set(a.unknown_identities)
    assert len(unknown) == round(0.2 * 12)
    assert not unknown & {identities[r] for r in a.gallery}
    assert {identities[r] for r in a.unknown_queries} == unknown
    for r in a.known_queries:  # every known query has another image of its identity in the gallery
        assert any(identities[g] == identities[r] for g in a.gallery)


def test_too_little_data_is_a_clear_message_with_the_fallback():
    with pytest.raises(NotEnoughData, match="Nothing was stored: runs keep the profile's"):
        make_open_split(["a", "b", "c"], 0.2, seed=0)


def test_calibrate_then_run_uses_the_fitted_threshold(seal_data, fast_profile, tmp_path):
    db = tmp_path / "g.db"
    result = run_cli("calibrate", "--profile", str(fast_profile), "--gallery", str(seal_data.gallery_csv),
                     "--db", str(db), "--unknown-share", "0.25", "--quiet", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "chosen τ" in result.stdout and "BAKS" in result.stdout
    assert (tmp_path / "calibration" / "reliability.png").stat().st_size > 1000
    assert (tmp_path / "calibration" / "threshold-sweep.png").stat().st_size > 1000
    run = run_cli("run", "--profile", str(fast_profile), "--query", str(seal_data.query_csv), "--db", str(db),
                  "--out", str(tmp_path / "out"), "--quiet")
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["calibration"].startswith("fitted")
    assert "using the calibration fitted" in run.stderr


def test_calibrate_on_a_tiny_gallery_exits_2(seal_data, fast_profile, tmp_path):
    lines = seal_data.gallery_csv.read_text().splitlines()
    small = tmp_path / "small.csv"
    header, rows = lines[0], lines[1:]
    small.write_text("\n".join([header] + rows[:4]).replace("images/", str(seal_data.root / "images") + "/")
                     .replace("masks/", str(seal_data.root / "masks") + "/")
                     .replace("patterns/", str(seal_data.root / "patterns") + "/") + "\n")
    result = run_cli("calibrate", "--profile", str(fast_profile), "--gallery", str(small), "--db", str(tmp_path / "g.db"))
    assert result.returncode == 2
    assert "calibration needs at least" in result.stderr
