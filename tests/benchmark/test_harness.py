"""reid-engine benchmark end to end on the tiny synthetic set: results, plots, resume, compare."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reid_engine.benchmark import harness
from reid_engine.benchmark.harness import BenchmarkOptions, benchmark
from reid_engine.errors import ReidError
from reid_engine.store.database import GalleryDatabase
from tests.conftest import run_cli

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, fast_profile):
    out = tmp_path_factory.mktemp("bench") / "b"
    result = run_cli("benchmark", "--dataset", "synthetic-seal-tiny", "--profile", str(fast_profile),
                     "--split", "closed", "--split", "open", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_results_tables_and_plots(finished):
    out, result = finished
    results = json.loads((out / "results.json").read_text())
    assert [c["split"] for c in results["cells"]] == ["closed", "open"]
    closed, open_ = results["cells"]
    assert closed["metrics"]["n_known_queries"] == 8 and open_["metrics"]["n_unknown_queries"] == 2
    assert open_["split_source"] == "the dataset's open.csv"  # the generator's own split
    assert open_["calibrated"] and not closed["calibrated"]  # --calibrate open (the default)
    assert all(0.0 <= c["metrics"]["top1"] <= 1.0 and c["peak_rss_mb"] > 0 and c["queries"] for c in results["cells"])
    assert results["machine"]["cpus_usable"] >= 1 and results["versions"]["torch"]
    md = (out / "results.md").read_text()
    assert "## split: closed" in md and "| synthetic-seal-tiny |" in md and "BAKS / BAUS / geo-mean" in md
    assert "## split: open" in result.stdout
    names = sorted(p.name for p in (out / "plots").iterdir())
    assert names == ["cmc-synthetic-seal-tiny-closed.png", "cmc-synthetic-seal-tiny-open.png",
                     "reliability-synthetic-seal-tiny-closed.png", "reliability-synthetic-seal-tiny-open.png",
                     "threshold-synthetic-seal-tiny-open.png", "time-vs-accuracy.png"]
    assert all((out / "plots" / n).read_bytes().startswith(PNG) for n in names)


def test_scores_npz_names_every_gallery_row_and_query(finished):
    """A cell's scores.npz names the photos it scored: gallery_ids and identities are the run's
    gallery rows in its order (the cell database's), query_ids the queries in predictions.csv's
    order (the order of index's and truth's rows)."""
    out, _ = finished
    folder = next((out / "cells").rglob("closed/cell.json")).parent
    scores = np.load(folder / "scores.npz")
    with open(next(folder.rglob("predictions.csv")), newline="") as handle:
        predicted = [row["image_id"] for row in csv.DictReader(handle)]
    assert scores["query_ids"].tolist() == predicted and len(scores["truth"]) == len(predicted)
    with GalleryDatabase(folder / "gallery.db") as db:
        gallery = db.gallery()  # the run's gallery rows, in its order
    assert scores["gallery_ids"].tolist() == [g.image_id for g in gallery]
    assert scores["identities"].tolist() == [g.identity for g in gallery]
    assert len(gallery) > scores["index"].max()


def test_resume_after_a_killed_run_reruns_only_the_unfinished_cell(finished, fast_profile):
    out, _ = finished
    closed = next((out / "cells").rglob("closed/cell.json"))
    open_ = next((out / "cells").rglob("open/cell.json"))
    stamp = closed.stat().st_mtime_ns
    open_.unlink()  # as if killed during the open cell
    result = run_cli("benchmark", "--dataset", "synthetic-seal-tiny", "--profile", str(fast_profile),
                     "--split", "closed", "--split", "open", "--out", str(out), "--resume")
    assert result.returncode == 0, result.stderr
    assert "closed: finished earlier, reused (--resume)" in result.stderr
    assert "open: running" in result.stderr and open_.is_file()
    assert closed.stat().st_mtime_ns == stamp


def test_compare_same_results_and_a_regression(finished, tmp_path):
    out, _ = finished
    same = run_cli("benchmark", "--out", str(out), "--compare", str(out / "results.json"), "--fail-on-regression")
    assert same.returncode == 0, same.stderr
    assert "0 better, 0 worse beyond noise" in same.stdout
    worse = json.loads((out / "results.json").read_text())
    for cell in worse["cells"]:
        for q in cell["queries"]:
            q["ranked"] = [r for r in q["ranked"] if r != q["truth"]]
        cell["metrics"]["top1"] = 0.0
    (tmp_path / "results.json").write_text(json.dumps(worse))
    regressed = run_cli("benchmark", "--out", str(tmp_path), "--compare", str(out / "results.json"),
                        "--fail-on-regression")
    assert regressed.returncode == 1
    assert "worse" in regressed.stdout and "paired" in regressed.stdout


def test_a_failed_cell_is_reported_and_the_others_go_on(tmp_path, fast_profile, monkeypatch):
    real = harness.run_cell

    def flaky(spec):
        if spec.split == "open":
            raise ReidError("weight 'x' is not installed")
        return real(spec)

    monkeypatch.setattr(harness, "run_cell", flaky)
    result = benchmark(BenchmarkOptions(datasets=["synthetic-seal-tiny"], profiles=[str(fast_profile)],
                                        splits=["closed", "open"], out=tmp_path / "b", isolate=False),
                       log=lambda line: None)
    assert [c["split"] for c in result.cells] == ["closed"]
    assert result.failed[0]["error"] == "ReidError: weight 'x' is not installed"
    assert "failed: ReidError: weight 'x' is not installed" in result.results_md.read_text()


def test_a_wrong_profile_stops_before_any_work(tmp_path):
    result = run_cli("benchmark", "--dataset", "synthetic-seal-tiny", "--profile", "no-such", "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "not a shipped profile" in result.stderr
    assert not (tmp_path / "b").exists()


def test_results_md_and_plots_are_written_again_from_results_json(finished, tmp_path):
    out, _ = finished
    (tmp_path / "results.json").write_bytes((out / "results.json").read_bytes())
    result = run_cli("benchmark", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "results.md").read_text() == (out / "results.md").read_text()
    assert len(list((tmp_path / "plots").glob("*.png"))) == 6
    missing = run_cli("benchmark", "--out", str(tmp_path / "none"))
    assert missing.returncode == 2 and "results.json: not found" in missing.stderr


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_killed_benchmark_takes_its_running_cell_with_it(tmp_path, fast_profile):
    """kill -9 of the benchmark leaves no orphan cell process computing on."""
    process = subprocess.Popen([sys.executable, "-m", "reid_engine", "benchmark", "--dataset", "synthetic-seal-tiny",
                                "--profile", str(fast_profile), "--out", str(tmp_path / "b")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    children: list[int] = []
    while not children and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        children = [c for c in _children(process.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert children, "no cell process started"
    process.kill()
    process.wait()
    deadline = time.monotonic() + 90  # the child notices once it has started (imports take a while)
    while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(f"/proc/{children[0]}").exists() or "Z" in Path(f"/proc/{children[0]}/stat").read_text().split()[2]
