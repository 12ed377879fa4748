"""A run killed mid-way leaves a database that opens, and the next run completes with the
same results as an uninterrupted one."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

from reid_engine.store.database import GalleryDatabase
from tests.conftest import run_cli


def _predictions(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_killed_run_resumes_to_the_same_answers(seal_data, fast_profile, tmp_path):
    reference = run_cli("run", "--profile", str(fast_profile), "--gallery", str(seal_data.gallery_csv),
                        "--query", str(seal_data.query_csv), "--out", str(tmp_path / "ref"), "--quiet")
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    blobs = out / "gallery.db.d" / "features"
    process = subprocess.Popen(
        [sys.executable, "-m", "reid_engine", "run", "--profile", str(fast_profile), "--gallery",
         str(seal_data.gallery_csv), "--query", str(seal_data.query_csv), "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if blobs.exists() and sum(1 for _ in blobs.rglob("*.npz")) >= 5:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "predictions.csv").exists()

    with GalleryDatabase(out / "gallery.db") as db:  # opens, and holds the enrolment
        assert db.counts()["images"] == 12

    resumed = run_cli("run", "--profile", str(fast_profile), "--gallery", str(seal_data.gallery_csv),
                      "--query", str(seal_data.query_csv), "--out", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert _predictions(out / "predictions.csv") == _predictions(tmp_path / "ref" / "predictions.csv")
