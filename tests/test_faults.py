"""Bad input and faults, as a list a reviewer reads: each case → what the user sees.

Every case ends in ONE line on stderr that names the cause and what to do, the documented
exit code (2: the user must change what they passed; 1: a failure), and no traceback.
"""

from __future__ import annotations

import csv
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reid_engine.errors import DatabaseError
from reid_engine.store.database import database_error
from tests.conftest import REPO, run_cli, write_image

GENERIC = (REPO / "registry" / "profiles" / "generic.toml").read_text()


def _profile(tmp_path: Path, old: str, new: str) -> Path:
    assert old in GENERIC
    path = tmp_path / "bad.toml"
    path.write_text(GENERIC.replace(old, new))
    return path


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# case → (arguments, exit code, words the one line must hold)
CASES = {
    "a CUDA device this machine does not have (--device cuda:7)":
        (lambda tmp: ["segment", str(tmp), "--species", "nyala", "--device", "cuda:7", "--db", str(tmp / "g.db")],
         2, ["--device cuda:7", "use --device auto, cpu"]),
    "a malformed device string (--device cuda:x)":
        (lambda tmp: ["segment", str(tmp), "--species", "nyala", "--device", "cuda:x", "--db", str(tmp / "g.db")],
         2, ["--device cuda:x"]),
    "[image] max_side below min_side: refused when the profile loads, naming the table and keys":
        (lambda tmp: ["run", "--profile", str(_profile(tmp, "max_side = 1600", "max_side = 16\nmin_side = 32")),
                      "--query", str(tmp), "--out", str(tmp / "out"), "--db", str(tmp / "g.db")],
         2, ["[image]", "min_side", "max_side"]),
    "an extractor asked for 0 keypoints: refused when the profile loads, naming the key":
        (lambda tmp: ["run", "--profile", str(_profile(tmp, "max_keypoints = 1024", "max_keypoints = 0")),
                      "--query", str(tmp), "--out", str(tmp / "out"), "--db", str(tmp / "g.db")],
         2, ["max_keypoints", "at least 1"]),
    "--out names a file: a usage error before any photo is enrolled":
        (lambda tmp: ["run", "--species", "generic", "--query", str(tmp), "--gallery", str(tmp),
                      "--out", str(tmp / "q.png"), "--db", str(tmp / "g.db")],
         2, ["--out", "is a file, not a folder"]),
    "a gallery identity named new_individual (the reserved answer 'not in the gallery')":
        (lambda tmp: ["enroll", "--gallery", str(_reserved_gallery(tmp)), "--db", str(tmp / "g.db"), "--no-extract"],
         2, ["'new_individual'", "reserved", "new_individual/b"]),
}


def _reserved_gallery(tmp: Path) -> Path:
    for name in ("seal_a/a.png", "new_individual/b.png"):
        (tmp / "gallery" / name).parent.mkdir(parents=True, exist_ok=True)
        write_image(tmp / "gallery" / name, np.full((64, 64, 3), 128, np.uint8))
    return tmp / "gallery"


@pytest.mark.parametrize("case", list(CASES))
def test_case(case, tmp_path):
    make_args, code, words = CASES[case]
    if "cuda:7" in case:
        import torch

        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has a cuda:7")
    (tmp_path / "q.png").write_bytes((REPO / "tests" / "thirdparty_plugin" / "pyproject.toml").read_bytes())
    result = run_cli(*make_args(tmp_path))
    assert result.returncode == code, result.stderr
    line = _one_line(result.stderr)
    assert line.startswith("error: ") and all(w in line for w in words), line
    assert not (tmp_path / "out").exists() and not (tmp_path / "g.db").exists()  # refused before any work


# an exception the engine never meant to raise, escaping from a command
@pytest.mark.parametrize("exc, code, words", [
    (RuntimeError("CUDA error: device-side assert triggered"), 1, ["unexpected RuntimeError", "REID_ENGINE_DEBUG=1"]),
    (KeyError("pipelines"), 1, ["unexpected KeyError", "report it"]),
    (sqlite3.OperationalError("database is locked"), 1, ["gallery database: database is locked", "--db"]),
    (MemoryError(), 1, ["out of memory", "run again"]),  # the machine's fault, not "a bug"
    (KeyboardInterrupt(), 130, ["interrupted; the gallery database is consistent"]),  # not click's "Aborted!"
])
def test_an_unexpected_exception_or_ctrl_c_is_one_line(monkeypatch, exc, code, words):
    from reid_engine.cli import app

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.delenv("REID_ENGINE_DEBUG", raising=False)
    monkeypatch.setattr("reid_engine.weights.status", fail)
    result = CliRunner().invoke(app, ["weights", "list"])
    assert result.exit_code == code
    line = _one_line(result.stderr)
    assert all(w in line for w in words) and "Aborted" not in result.output, line


def test_reid_engine_debug_shows_the_traceback_of_an_unexpected_exception(monkeypatch):
    from reid_engine.cli import app

    def fail(*args, **kwargs):
        raise RuntimeError("where did this come from")

    monkeypatch.setenv("REID_ENGINE_DEBUG", "1")
    monkeypatch.setattr("reid_engine.weights.status", fail)
    result = CliRunner().invoke(app, ["weights", "list"])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


# the gallery database's SQLite errors name the real cause
@pytest.mark.parametrize("sqlite_message, words", [
    ("database is locked", ["locked by another process", "wait for it to finish"]),
    ("attempt to write a readonly database", ["cannot be written", "writable"]),
    ("unable to open database file", ["cannot be written"]),
    ("file is not a database", ["not a reid-engine gallery database"]),
])
def test_sqlite_errors_name_the_cause(sqlite_message, words):
    error = database_error(Path("/data/g.db"), sqlite3.OperationalError(sqlite_message))
    assert isinstance(error, DatabaseError) and str(error).startswith("/data/g.db: ")
    assert all(w in str(error) for w in words), str(error)


# nothing the engine passes over is silent
def test_a_folder_scan_lists_every_file_it_passes_over(tmp_path):
    gallery = _reserved_gallery(tmp_path)  # seal_a/a.png, new_individual/b.png
    (gallery / "new_individual" / "b.png").rename(gallery / "seal_a" / "c.png")
    (gallery / "new_individual").rmdir()
    (gallery / "seal_a" / "d.heic").write_bytes(b"ftypheic")
    (gallery / "seal_a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(gallery / "seal_a" / "pipe.jpg")  # would block a reader forever
    write_image(gallery / "loose.png", np.full((64, 64, 3), 90, np.uint8))  # no identity folder
    result = run_cli("enroll", "--gallery", str(gallery), "--db", str(tmp_path / "g.db"), "--no-extract", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "enrolled 2 new image(s)" in result.stdout
    rows = {r["image_id"]: r for r in csv.DictReader(open(tmp_path / "g-enroll-errors.csv"))}
    assert {i: rows[i]["stage"] for i in rows} == {"seal_a/d": "scan", "seal_a/gone": "scan", "seal_a/pipe": "scan",
                                                  "loose": "scan"}
    assert ".heic is not an image format" in rows["seal_a/d"]["reason"]
    assert "does not exist" in rows["seal_a/gone"]["reason"]
    assert "not a regular file" in rows["seal_a/pipe"]["reason"]
    assert "no identity" in rows["loose"]["reason"]


def test_a_manifest_row_naming_a_fifo_is_refused_not_read(tmp_path):
    write_image(tmp_path / "a.png", np.full((64, 64, 3), 128, np.uint8))
    os.mkfifo(tmp_path / "b.png")
    (tmp_path / "g.csv").write_text("image_id,identity,path\na,seal_a,a.png\nb,seal_a,b.png\n")
    result = run_cli("enroll", "--gallery", str(tmp_path / "g.csv"), "--db", str(tmp_path / "g.db"), "--no-extract",
                     timeout=120)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "g-enroll-errors.csv")))
    assert [(r["image_id"], r["stage"]) for r in rows] == [("b", "enroll")]
    assert "not a regular file" in rows[0]["reason"]


# a resource fault is a failed run, never "unusable images"
def test_the_disk_filling_while_features_are_cached_stops_the_run_and_the_next_run_resumes(seal_data, fast_profile,
                                                                                          tmp_path, monkeypatch):
    import errno

    from reid_engine.commands.run import run
    from reid_engine.errors import ResourceError
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.runs import RunOptions
    from reid_engine.store.features import FeatureCache

    options = RunOptions(load_profile_file(fast_profile), tmp_path / "g.db", tmp_path / "out",
                         gallery=seal_data.gallery_csv, query=seal_data.query_csv)
    put, stored = FeatureCache.put, []

    def put_until_full(self, content_hash, built, features):
        if len(stored) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.db.blob_dir / "features" / "x.npz"))
        put(self, content_hash, built, features)
        stored.append(content_hash)

    monkeypatch.setattr(FeatureCache, "put", put_until_full)
    with pytest.raises(ResourceError, match=r"g\.db\.d/features/x\.npz: no space left on the device; free it.*resumes"):
        run(options, progress=False)
    assert not (tmp_path / "out" / "predictions.csv").exists()  # no answer from a partial gallery
    monkeypatch.setattr(FeatureCache, "put", put)
    again = run(options, progress=False)
    assert not again.errors and again.counts["features_reused"] == 5  # kept, not recomputed


def test_running_out_of_memory_in_an_extractor_stops_the_run(seal_data, fast_profile, tmp_path, monkeypatch):
    from reid_engine.commands.run import run
    from reid_engine.errors import ResourceError
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.runs import RunOptions
    from reid_engine.store import features

    def no_memory(f):
        raise MemoryError()

    monkeypatch.setattr(features, "clean_features", no_memory)
    with pytest.raises(ResourceError, match="out of memory; close other programs"):
        run(RunOptions(load_profile_file(fast_profile), tmp_path / "g.db", None, gallery=seal_data.gallery_csv,
                       query=seal_data.query_csv), progress=False)


def test_a_full_disk_in_sqlite_is_a_resource_fault():
    from reid_engine.errors import ResourceError

    error = database_error(Path("/data/g.db"), sqlite3.OperationalError("database or disk is full"))
    assert isinstance(error, ResourceError) and "no space left" in str(error)


def test_a_real_full_disk_is_one_line_and_exit_1(seal_data, fast_profile, tmp_path):
    """--db on a 1 MiB tmpfs: exit 1 naming the path and the cause, not every photo in errors.csv."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        result = run_cli("run", "--profile", str(fast_profile), "--gallery", str(seal_data.gallery_csv), "--query",
                         str(seal_data.query_csv), "--db", str(mount / "g.db"), "--out", str(tmp_path / "out"))
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    assert result.returncode == 1, result.stderr
    line = _one_line(result.stderr)
    assert "no space left on the device" in line and str(mount) in line, line
    assert not (tmp_path / "out" / "predictions.csv").exists()


# messages name image ids, not content hashes
def test_cached_features_gone_mid_run_are_named_by_image_id(tmp_path):
    from types import SimpleNamespace

    from reid_engine.errors import ReidError
    from reid_engine.store.database import GalleryDatabase
    from reid_engine.store.features import FeatureCache, LazyFeatures

    key = "ab" * 32
    with GalleryDatabase(tmp_path / "g.db") as db:
        cache = FeatureCache(db)
        cache.image_ids[key] = "seal_a_03"
        built = SimpleNamespace(cache_id=("aliked", "1", "cfg"), spec=SimpleNamespace(name="aliked"))
        with pytest.raises(ReidError, match=r"cached features of image 'seal_a_03' \(aliked\) are missing") as caught:
            LazyFeatures(cache, [key], built)[0]
    assert key[:12] not in str(caught.value)


# gallery integrity: one photo enrolled twice is said, not silently doubled
def test_the_same_photo_under_two_identities_and_under_new_image_ids_is_said(tmp_path):
    gallery = _reserved_gallery(tmp_path)  # seal_a/a.png, new_individual/b.png
    (gallery / "new_individual").rename(gallery / "seal_b")
    (gallery / "seal_b" / "b.png").write_bytes((gallery / "seal_a" / "a.png").read_bytes())  # a's photo, labelled b
    first = run_cli("enroll", "--gallery", str(gallery), "--db", str(tmp_path / "g.db"), "--no-extract")
    assert first.returncode == 0, first.stderr
    assert "1 photo(s) are the same file under two identities" in " ".join(first.stderr.split())
    (gallery / "seal_b" / "b.png").unlink()
    (gallery / "seal_a" / "a-copy.png").write_bytes((gallery / "seal_a" / "a.png").read_bytes())
    again = run_cli("enroll", "--gallery", str(gallery), "--db", str(tmp_path / "other.db"), "--no-extract")
    said = " ".join(again.stderr.split())
    assert again.returncode == 0 and "the same file under several image ids" in said, again.stderr
    assert "'seal_a/a' (seal_a) = 'seal_a/a-copy' (seal_a)" in said and "two identities" not in said


def test_a_file_that_is_no_image_is_not_counted_as_enrolled(tmp_path):
    gallery = _reserved_gallery(tmp_path)
    (gallery / "new_individual").rename(gallery / "seal_b")
    (gallery / "seal_b" / "c.jpg").write_text("not a photo at all")
    result = run_cli("enroll", "--gallery", str(gallery), "--db", str(tmp_path / "g.db"), "--no-extract")
    assert result.returncode == 0, result.stderr
    assert "enrolled 2 new image(s)" in result.stdout and "2 images of 2 individuals" in result.stdout, result.stdout
    rows = list(csv.DictReader(open(tmp_path / "g-enroll-errors.csv")))
    assert [(r["image_id"], r["stage"]) for r in rows] == [("seal_b/c", "enroll")]
    assert "not an image Pillow can read" in rows[0]["reason"]


def test_a_linked_identity_folder_is_followed_and_a_link_loop_is_listed_not_walked(tmp_path):
    from reid_engine.inputs.manifests import load_manifest
    from reid_engine.registry import PluginTable

    elsewhere = tmp_path / "elsewhere" / "seal_c"
    elsewhere.mkdir(parents=True)
    write_image(elsewhere / "c.png", np.full((64, 64, 3), 90, np.uint8))
    gallery = _reserved_gallery(tmp_path)
    (gallery / "new_individual").rename(gallery / "seal_b")
    (gallery / "seal_c").symlink_to(elsewhere, target_is_directory=True)
    (gallery / "seal_b" / "loop").symlink_to(gallery, target_is_directory=True)
    manifest = load_manifest(gallery, "gallery", PluginTable.discover())
    assert sorted(r.image_id for r in manifest.records) == ["seal_a/a", "seal_b/b", "seal_c/c"]
    assert [(s.image_id, "a folder already scanned" in s.reason) for s in manifest.skipped] == [("seal_b/loop", True)]


def test_a_damaged_cached_blob_is_recomputed_in_the_same_run(seal_data, fast_profile, tmp_path):
    from reid_engine.commands.run import run
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.runs import RunOptions

    options = RunOptions(load_profile_file(fast_profile), tmp_path / "g.db", None, gallery=seal_data.gallery_csv,
                         query=seal_data.query_csv)
    first = run(options, progress=False)
    blob = sorted((tmp_path / "g.db.d" / "features").rglob("*.npz"))[3]
    blob.write_bytes(b"\x00" * 100)  # a disk error, a killed copy...
    again = run(options, progress=False)
    assert not again.errors and again.counts["features_recomputed"] == 1
    assert any("damaged or gone and were recomputed" in n for n in again.notices)
    assert [(p.image_id, p.prediction) for p in again.predictions] == [(p.image_id, p.prediction) for p in first.predictions]
