"""End-to-end runs of the ``reid-engine`` command on tiny synthetic seals."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli, write_image


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def first_run(seal_data, fast_profile, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run_cli("run", "--profile", str(fast_profile), "--gallery", str(seal_data.gallery_csv),
                     "--query", str(seal_data.query_csv), "--out", str(out), "--top-k", "3", "--quiet")
    assert result.returncode == 0, result.stderr
    return out, result


def test_outputs_have_the_documented_columns(first_run, seal_data):
    out, result = first_run
    queries = _rows(seal_data.query_csv)
    predictions = _rows(out / "predictions.csv")
    assert list(predictions[0]) == ["image_id", "path", "prediction", "score", "decision", "animal"]
    assert sorted(p["image_id"] for p in predictions) == sorted(q["image_id"] for q in queries)
    for p in predictions:
        assert p["decision"] in ("known", "new")
        assert (p["prediction"] == "new_individual") == (p["decision"] == "new")
        assert 0.0 <= float(p["score"]) <= 1.0
    ranking = _rows(out / "ranking.csv")
    assert list(ranking[0]) == ["image_id", "rank", "identity", "score", "gallery_image_id"]
    by_query: dict[str, list] = {}
    for row in ranking:
        by_query.setdefault(row["image_id"], []).append(row)
    gallery_ids = {g["image_id"]: g["identity"] for g in _rows(seal_data.gallery_csv)}
    for rows in by_query.values():
        assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1)) and len(rows) <= 3
        assert len({r["identity"] for r in rows}) == len(rows)  # an identity once per query
        assert all(gallery_ids[r["gallery_image_id"]] == r["identity"] for r in rows)
        scores = [float(r["score"]) for r in rows]
        assert scores == sorted(scores, reverse=True)
    assert _rows(out / "errors.csv") == []
    html = (out / "report.html").read_text()
    assert "data:image/jpeg;base64," in html and "http://" not in html and "https://" not in html
    assert "top1" in result.stdout


def test_the_run_identifies_known_seals(first_run):
    summary = json.loads((first_run[0] / "summary.json").read_text())
    assert summary["metrics"]["top1"] >= 0.6  # 8 known queries; a broken pipeline scores ~0.25


def test_second_run_extracts_nothing_and_answers_the_same(first_run, seal_data, fast_profile, tmp_path):
    out, _ = first_run
    again = run_cli("run", "--profile", str(fast_profile), "--query", str(seal_data.query_csv),
                    "--db", str(out / "gallery.db"), "--out", str(tmp_path), "--top-k", "3", "--quiet")
    assert again.returncode == 0, again.stderr
    counts = json.loads((tmp_path / "summary.json").read_text())["counts"]
    assert counts["features_computed"] == 0 and counts["features_reused"] > 0
    assert _rows(tmp_path / "predictions.csv") == _rows(out / "predictions.csv")


def test_bad_images_are_skipped_into_errors_csv(seal_data, fast_profile, tmp_path, first_run):
    folder = tmp_path / "queries"
    folder.mkdir()
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "cut.jpg").write_bytes((seal_data.root / "images").glob("*.png").__next__().read_bytes()[:500])
    write_image(folder / "tiny.png", np.zeros((20, 20, 3), np.uint8))
    good = sorted((seal_data.root / "images").glob("q_*.png"))[0]
    (folder / good.name).write_bytes(good.read_bytes())
    result = run_cli("run", "--profile", str(fast_profile), "--query", str(folder), "--db",
                     str(first_run[0] / "gallery.db"), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    errors = {r["image_id"]: r["reason"] for r in _rows(tmp_path / "out" / "errors.csv")}
    assert set(errors) == {"notes", "cut", "tiny"}
    assert "not an image" in errors["notes"] and "too small" in errors["tiny"]
    assert [p["image_id"] for p in _rows(tmp_path / "out" / "predictions.csv")] == [good.stem]


@pytest.mark.parametrize("args,message", [
    (["--query", "missing.csv", "--db", "x.db"], "missing.csv: no such file or folder"),
    (["--gallery", "g.csv", "--query", "q.csv"], "g.csv: missing column 'identity'"),
    ([], "nothing to identify"),
])
def test_usage_errors_exit_2_with_one_message(tmp_path, args, message):
    (tmp_path / "g.csv").write_text("image_id,path\na,a.jpg\n")
    (tmp_path / "q.csv").write_text("image_id,path\na,a.jpg\n")
    result = run_cli("run", "--species", "nyala", *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args,message", [
    (["profile"], "No such command 'profile'"),
    (["run", "--bogus"], "No such option: --bogus"),
    (["run", "--top-k", "x"], "Invalid value for '--top-k'"),
])
def test_mistyped_commands_and_options_are_usage_errors_not_bugs(args, message):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "bug" not in result.stderr and "Traceback" not in result.stderr


def test_unknown_species_falls_back_to_generic_with_a_notice(tmp_path):
    result = run_cli("run", "--species", "okapi", "--query", "missing", "--out", str(tmp_path))
    assert "no profile for species 'okapi'" in result.stderr and "generic" in result.stderr


def test_bad_profile_key_names_file_and_choices(tmp_path):
    profile = tmp_path / "bad.toml"
    profile.write_text('[profile]\nname = "x"\n[shortlist]\ntop_k = 3\n')
    result = run_cli("run", "--profile", str(profile), "--query", "q", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "bad.toml [shortlist]: unknown key 'top_k'; allowed keys: embedder, top_b" in result.stderr.replace("\n", " ")


def test_database_from_a_newer_schema_exits_1(first_run, seal_data, tmp_path):
    db = tmp_path / "new.db"
    db.write_bytes((first_run[0] / "gallery.db").read_bytes())
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    result = run_cli("run", "--species", "seal", "--query", str(seal_data.query_csv), "--db", str(db),
                     "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "newer reid-engine" in result.stderr


def test_enroll_then_query_with_the_database_only(seal_data, fast_profile, tmp_path):
    db = tmp_path / "g.db"
    result = run_cli("enroll", "--gallery", str(seal_data.gallery_csv), "--db", str(db), "--profile", str(fast_profile))
    assert result.returncode == 0, result.stderr
    assert "enrolled 12 new image(s)" in result.stdout
    again = run_cli("enroll", "--gallery", str(seal_data.gallery_csv), "--db", str(db), "--no-extract")
    assert "enrolled 0 new image(s) (12 already there)" in again.stdout


def test_enroll_of_photos_none_usable_fails_naming_the_first(tmp_path):
    for identity, data in (("a", b"not a jpeg"), ("b", b"\xff\xd8\xff\xe0 truncated")):
        (tmp_path / "gallery" / identity).mkdir(parents=True)
        (tmp_path / "gallery" / identity / "1.jpg").write_bytes(data)
    result = run_cli("enroll", "--gallery", str(tmp_path / "gallery"), "--db", str(tmp_path / "g.db"), "--no-extract")
    assert result.returncode == 1
    assert "none of the 2 photo(s)" in result.stderr and "1.jpg" in result.stderr
    assert (tmp_path / "g-enroll-errors.csv").exists()


def test_plugins_and_profiles_commands():
    result = run_cli("plugins", env={"COLUMNS": "250"})
    assert result.returncode == 0
    for name in ("fisher-vector", "hessaff-rootsift", "adalam", "mnn", "ransac-inliers", "match-count"):
        assert name in result.stdout
    profiles = run_cli("profiles", env={"COLUMNS": "250"})
    for name in ("seal", "nyala", "generic"):
        assert name in profiles.stdout


# -- output for pipes and scripts ------------------------------------------------------------
def test_run_json_prints_the_summary_every_prediction_and_the_outputs(first_run, seal_data, fast_profile, tmp_path):
    out, _ = first_run
    result = run_cli("run", "--profile", str(fast_profile), "--query", str(seal_data.query_csv),
                     "--db", str(out / "gallery.db"), "--out", str(tmp_path / "again"), "--quiet", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)  # stdout is one JSON document, nothing else
    on_disk = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert {k: printed[k] for k in ("profile", "metrics", "counts", "threshold")} == \
        {k: on_disk[k] for k in ("profile", "metrics", "counts", "threshold")}
    assert len(printed["predictions"]) == len(_rows(seal_data.query_csv))
    assert {p["image_id"]: p["prediction"] for p in printed["predictions"]} == \
        {r["image_id"]: r["prediction"] for r in _rows(tmp_path / "again" / "predictions.csv")}
    assert all(Path(p).is_file() for p in printed["outputs"].values())


@pytest.mark.parametrize("command, key", [(("plugins", "--json"), "plugins"), (("profiles", "--json"), None),
                                          (("weights", "list", "--json"), None)])
def test_listings_take_json(command, key):
    result = run_cli(*command)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    rows = listed[key] if key else listed
    names = {r["name"] for r in rows}
    expected = {"plugins": {"lightglue", "hessaff-rootsift", "isnet"}, "profiles": {"seal", "nyala", "generic"},
                "weights": {"aliked-n16", "isnet-small"}}[command[0]]
    assert expected <= names


def test_tables_printed_to_a_pipe_are_not_cut_to_80_columns():
    listed = json.loads(run_cli("plugins", "--json").stdout)["plugins"]
    piped = run_cli("plugins", env={"COLUMNS": ""})  # stdout is a pipe here
    assert piped.returncode == 0 and "…" not in piped.stdout
    lines = piped.stdout.splitlines()
    for plugin in listed:  # each plugin on one whole line, with its source
        assert any(plugin["name"] in line and plugin["from"] in line for line in lines), plugin["name"]
