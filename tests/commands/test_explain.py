"""Match drawings: ``engine/drawing.py``, ``engine/explain.py``, ``reid-engine explain`` and report.html's drawings."""

from __future__ import annotations

import csv
import io
import os
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid_engine.errors import ReidError, UsageError
from reid_engine.outputs.drawing import CAPTION_HEIGHT, draw_matches, encode_jpeg, save_png
from reid_engine.records import Candidate, LocalFeatures, Matches, Prediction
from tests.conftest import copy_manifest, run_cli


def _features(n: int, hw: tuple[int, int], seed: int, lafs: bool = True) -> LocalFeatures:
    rng = np.random.default_rng(seed)
    h, w = hw
    kpts = (rng.random((n, 2)) * (w - 20, h - 20) + 10).astype(np.float32)
    frames = None
    if lafs:
        a = rng.normal(0, 4, (n, 2, 2)) + np.eye(2) * 8  # elongated, rotated regions
        frames = np.concatenate([a, kpts[:, :, None]], axis=2).astype(np.float32)
    return LocalFeatures(kpts, rng.random((n, 8)).astype(np.float32), np.ones(n, np.float32), frames, hw)


def _grey(hw: tuple[int, int], value: int = 128) -> np.ndarray:
    return np.full((*hw, 3), value, np.uint8)


def _coloured_pixels(rgb: np.ndarray) -> int:
    """Pixels below the caption bar that are clearly not grey (the test images are grey)."""
    body = rgb[CAPTION_HEIGHT:].astype(np.int16)
    spread = body.max(axis=2) - body.min(axis=2)
    return int((spread > 60).sum())


def _matches(n: int, m: int, seed: int = 0) -> Matches:
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.permutation(n)[:m], rng.permutation(n)[:m]], axis=1).astype(np.int64)
    return Matches(idx, rng.uniform(0.2, 0.9, m).astype(np.float32))


def test_drawing_has_the_expected_size_and_coloured_lines():
    f1, f2 = _features(50, (300, 400), 1), _features(50, (200, 300), 2)
    matches = _matches(50, 30)
    inliers = np.arange(30) % 3 != 0
    t = time.perf_counter()
    rgb = draw_matches(_grey((300, 400)), _grey((200, 300), 90), f1, f2, matches, inliers, "q vs g", info="p · score 20")
    elapsed = time.perf_counter() - t
    # common height 300: the second image is scaled to 450 wide; 8 px gap; caption bar on top
    assert rgb.dtype == np.uint8 and rgb.shape == (CAPTION_HEIGHT + 300, 400 + 8 + 450, 3)
    assert _coloured_pixels(rgb) > 500
    assert elapsed < 2.0  # about 10 ms on a quiet machine; generous for a shared one


def test_outliers_only_are_grey_and_hidden_outliers_leave_the_images_alone():
    f1, f2 = _features(20, (120, 160), 3), _features(20, (120, 160), 4)
    matches = _matches(20, 10)
    none = np.zeros(10, bool)
    faint = draw_matches(_grey((120, 160)), _grey((120, 160)), f1, f2, matches, none)
    hidden = draw_matches(_grey((120, 160)), _grey((120, 160)), f1, f2, matches, none, outliers="hidden")
    assert _coloured_pixels(faint) == 0 and not np.array_equal(faint[CAPTION_HEIGHT:], hidden[CAPTION_HEIGHT:])
    assert (hidden[CAPTION_HEIGHT:, :160] == 128).all()


def test_zero_matches_still_draw_both_images():
    f1, f2 = LocalFeatures.empty(8, (120, 160)), LocalFeatures.empty(8, (100, 100), with_lafs=False)
    rgb = draw_matches(_grey((120, 160)), _grey((100, 100)), f1, f2, Matches.empty(), np.zeros(0, bool), "nothing")
    assert rgb.shape == (CAPTION_HEIGHT + 120, 160 + 8 + 120, 3)
    assert _coloured_pixels(rgb) == 0
    assert (rgb[CAPTION_HEIGHT:, :160] == 128).all()  # the first image, untouched


def test_without_lafs_regions_are_circles_and_inliers_default_to_all():
    f1, f2 = _features(30, (200, 200), 5, lafs=False), _features(30, (200, 200), 6, lafs=False)
    rgb = draw_matches(_grey((200, 200)), _grey((200, 200)), f1, f2, _matches(30, 12), None)
    assert _coloured_pixels(rgb) > 200


def test_width_is_bounded_and_keypoints_follow_a_resized_image():
    big = _grey((2000, 3000))
    f1, f2 = _features(40, (2000, 3000), 7), _features(40, (500, 750), 8)  # f2 refers to a smaller copy
    rgb = draw_matches(big, _grey((1000, 1500)), f1, f2, _matches(40, 20), None, max_width=800)
    assert rgb.shape[1] <= 800 and rgb.shape[0] <= 900
    assert _coloured_pixels(rgb) > 100


def test_a_mask_is_outlined():
    from reid_engine.records import ImageRecord, LoadedImage

    mask = np.zeros((100, 100), bool)
    mask[20:80, 30:70] = True
    image = LoadedImage(ImageRecord("a", Path("a.png")), _grey((100, 100)), mask, "h", (100, 100))
    f = LocalFeatures.empty(8, (100, 100))
    rgb = draw_matches(image, _grey((100, 100)), f, f, Matches.empty())
    assert _coloured_pixels(rgb[:, :100]) > 50  # magenta outline on the first image only
    assert _coloured_pixels(rgb[:, 108:]) == 0


def test_bad_inlier_mask_is_an_error_naming_it():
    f = _features(5, (50, 50), 9)
    with pytest.raises(ValueError, match="inliers"):
        draw_matches(_grey((50, 50)), _grey((50, 50)), f, f, _matches(5, 4), np.ones(3, bool))


def test_save_png_and_jpeg(tmp_path):
    rgb = draw_matches(_grey((64, 64)), _grey((64, 64)), LocalFeatures.empty(8), LocalFeatures.empty(8), Matches.empty())
    path = save_png(tmp_path / "sub" / "m.png", rgb)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (rgb.shape[1], rgb.shape[0])
    with Image.open(io.BytesIO(encode_jpeg(rgb))) as im:
        assert im.format == "JPEG"
    for name in ("m.jpg", "m.JPEG"):  # the format follows the suffix
        with Image.open(save_png(tmp_path / name, rgb)) as im:
            assert im.format == "JPEG"


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_save_png_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    old, new = _grey((20, 30), 10), _grey((20, 30), 240)
    target = save_png(tmp_path / "m.png", old)
    save_png(target, new)  # replaced in place
    assert os.listdir(tmp_path) == ["m.png"] and np.array_equal(_read(target), new)

    def broken(self, fp, *args, **kwargs):  # dies half way through writing
        fp.write(b"\x89PNG half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(ReidError, match="No space left on device.*--out"):
        save_png(target, old)
    assert os.listdir(tmp_path) == ["m.png"]  # no temp file left behind...
    monkeypatch.undo()
    assert np.array_equal(_read(target), new)  # ...and the old drawing is intact


def test_save_png_rejects_other_suffixes_naming_out(tmp_path):
    for name in ("m.gif", "m.webp", "m"):
        with pytest.raises(UsageError, match="--out"):
            save_png(tmp_path / name, _grey((8, 8)))
    assert os.listdir(tmp_path) == []


def test_ransac_inliers_agree_with_its_score():
    from reid_engine.plugins.scorers.ransac import RansacConfig, RansacInliers

    rng = np.random.default_rng(0)
    n = 80
    p1 = rng.random((n, 2)).astype(np.float32) * 400
    p2 = p1 * 0.9 + 15  # a similarity...
    p2[:25] = rng.random((25, 2)) * 400  # ...and 25 outliers
    f1 = LocalFeatures(p1, np.zeros((n, 4), np.float32), np.ones(n, np.float32), None, (400, 400))
    f2 = LocalFeatures(p2.astype(np.float32), np.zeros((n, 4), np.float32), np.ones(n, np.float32), None, (400, 400))
    matches = Matches(np.stack([np.arange(n), np.arange(n)], 1), rng.random(n).astype(np.float32))
    for weighted in (False, True):
        scorer = RansacInliers(RansacConfig(weighted=weighted))
        inl = scorer.inliers(f1, f2, matches)
        assert inl.dtype == bool and inl.shape == (n,) and inl[25:].all() and inl[:25].sum() < 3
        expected = matches.conf[inl].sum() if weighted else inl.sum()
        assert scorer.score(f1, f2, matches) == pytest.approx(float(expected))
    few = Matches(matches.idx[:3], matches.conf[:3])
    assert scorer.inliers(f1, f2, few).tolist() == [False] * 3 and scorer.score(f1, f2, few) == 0.0


def test_match_pair_without_an_inlier_set_draws_all_and_says_so():
    from types import SimpleNamespace

    from reid_engine.outputs.evidence import draw_evidence
    from reid_engine.scoring.pairs import match_pair

    f1, f2 = _features(20, (100, 100), 10), _features(20, (100, 100), 11)
    m = _matches(20, 8)
    pipeline = SimpleNamespace(
        name="p", matcher=SimpleNamespace(obj=SimpleNamespace(match=lambda a, b: m)),
        scorer=SimpleNamespace(obj=SimpleNamespace(score=lambda a, b, mm: float(len(mm))),
                               spec=SimpleNamespace(name="match-count")))
    evidence = match_pair(pipeline, f1, f2)
    assert not evidence.inliers_known and evidence.inliers.all() and evidence.score == 8.0
    rgb = draw_evidence(_grey((100, 100)), _grey((100, 100)), f1, f2, evidence, "t")
    assert _coloured_pixels(rgb) > 50


def test_a_plugin_failing_on_the_pair_is_one_reid_error_line():
    from types import SimpleNamespace

    from reid_engine.scoring.pairs import match_pair

    f = _features(10, (50, 50), 12)

    def fails(exc):
        def call(*args):
            raise exc
        return call

    def pipeline(match, score):
        return SimpleNamespace(
            name="p", matcher=SimpleNamespace(obj=SimpleNamespace(match=match), spec=SimpleNamespace(name="mnn")),
            scorer=SimpleNamespace(obj=SimpleNamespace(score=score), spec=SimpleNamespace(name="ransac-inliers")))

    ok_match, ok_score = (lambda a, b: _matches(10, 4)), (lambda a, b, m: 4.0)
    with pytest.raises(ReidError) as err:
        match_pair(pipeline(fails(ValueError("descriptors differ:\n 128 vs 256")), ok_score), f, f)
    assert str(err.value) == ("pipeline 'p': matcher 'mnn' failed on this pair: descriptors differ: 128 vs 256")
    with pytest.raises(ReidError, match=r"^pipeline 'p': scorer 'ransac-inliers' failed on this pair: CUDA out of"):
        match_pair(pipeline(ok_match, fails(RuntimeError("CUDA out of memory"))), f, f)


# -- report ----------------------------------------------------------------------------------


def test_report_embeds_drawings_and_survives_a_failing_one(tmp_path):
    from reid_engine.outputs.report import write_report

    img = tmp_path / "a.png"
    Image.fromarray(_grey((40, 40))).save(img)
    cand = Candidate(1, "seal_1", 0.9, "g1", str(img))
    preds = [Prediction(q, str(img), "seal_1", 0.9, "known", (cand,)) for q in ("q1", "q2")]
    jpeg = encode_jpeg(_grey((30, 60), 200))

    def evidence(p):
        if p.image_id == "q2":
            raise OSError("g1.png: file not found")
        return [("#1 seal_1: 12 inliers (sift)", jpeg)]

    html = (write_report(tmp_path / "r.html", preds, title="t", summary={}, evidence=evidence)).read_text()
    assert html.count('<details class="evidence">') == 1
    assert "#1 seal_1: 12 inliers (sift)" in html and "data:image/jpeg;base64," in html
    assert "match drawing unavailable (OSError: g1.png: file not found)" in html


def _report_inputs(tmp_path, fast_profile):
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.runs import RunOptions, RunResult

    img = tmp_path / "a.png"
    Image.fromarray(_grey((40, 40))).save(img)
    cand = Candidate(1, "seal_1", 0.9, "g1", str(img))
    preds = [Prediction(q, str(img), "seal_1", 0.9, "known", (cand,)) for q in ("q1", "q2")]
    result = RunResult(preds, [], {}, {}, {}, threshold=0.5)
    options = RunOptions(profile=load_profile_file(fast_profile), db=tmp_path / "g.db", out=tmp_path / "out")
    return result, options, img


def test_report_is_written_without_drawings_when_the_database_cannot_be_opened(tmp_path, fast_profile):
    from reid_engine.outputs.evidence import ReportEvidence
    from reid_engine.outputs.run_outputs import write_run_report
    from reid_engine.records import ImageRecord

    result, options, img = _report_inputs(tmp_path, fast_profile)
    folder = tmp_path / "not-a-db"
    folder.mkdir()
    queries = {p.image_id: (ImageRecord(p.image_id, img), "h") for p in result.predictions}
    path = write_run_report(tmp_path / "report.html", result, options,
                         lambda: ReportEvidence(None, folder, options.profile.image, queries, {}))
    html = path.read_text()
    assert '<details class="evidence">' not in html and "<figure><img" not in html
    assert len(result.notices) == 1 and "has no match drawings" in result.notices[0]
    assert "is a folder" in result.notices[0] and "match drawings" in html and "is a folder" in html

    result.notices.clear()  # the drawing code itself cannot even be prepared: same
    path = write_run_report(tmp_path / "report.html", result, options, lambda: 1 / 0)
    assert "ZeroDivisionError" in result.notices[0] and "ZeroDivisionError" in path.read_text()


def test_failed_drawings_are_counted_in_a_notice(tmp_path, fast_profile):
    from types import SimpleNamespace

    from reid_engine.outputs.evidence import ReportEvidence
    from reid_engine.outputs.run_outputs import write_run_report
    from reid_engine.records import ImageRecord

    result, options, img = _report_inputs(tmp_path, fast_profile)
    extractor = SimpleNamespace(cache_id=("sift", "1", "0" * 16), spec=SimpleNamespace(name="sift"))
    queries = {p.image_id: (ImageRecord(p.image_id, img), "0" * 64) for p in result.predictions}
    gallery = {"g1": (ImageRecord("g1", img), "0" * 64)}
    evidence = []

    def make():
        evidence.append(ReportEvidence(SimpleNamespace(extractor=extractor), tmp_path / "empty.db",
                                       options.profile.image, queries, gallery))
        return evidence[0]

    html = write_run_report(tmp_path / "report.html", result, options, make).read_text()
    assert html.count("match drawing unavailable") == 2 and "no cached sift features" in html
    assert evidence[0].failed == 2 and evidence[0]._db is None  # closed again
    assert len(result.notices) == 1 and "failed for 2 of 2 queries" in result.notices[0]
    assert "explain_s" in result.timings


def test_a_tiny_run_report_shows_a_match_drawing(seal_data, fast_profile, tmp_path):
    from reid_engine.commands.run import run
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.runs import RunOptions

    with open(seal_data.query_csv, newline="") as handle:
        queries = [r for r in csv.DictReader(handle) if r.get("truth", "").startswith("seal")][:2]
    known = {q["truth"] for q in queries}
    gallery = copy_manifest(seal_data.gallery_csv, tmp_path / "g.csv", lambda r: r["identity"] in known)
    query = copy_manifest(seal_data.query_csv, tmp_path / "q.csv", lambda r: r["image_id"] in {q["image_id"] for q in queries})
    options = RunOptions(profile=load_profile_file(fast_profile), db=tmp_path / "g.db", out=tmp_path / "out",
                         gallery=gallery, query=query, device="cpu", explain_top=2)
    result = run(options, progress=False)
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count('<details class="evidence">') == len(result.predictions) == 2
    assert html.count("<figure><img") == sum(min(2, len(p.candidates)) for p in result.predictions)
    assert "inliers (sift-mnn)" in html and "match drawing unavailable" not in html
    assert result.timings["explain_s"] < 10.0


# -- CLI -------------------------------------------------------------------------------------


def _two_seal_images(seal_data) -> tuple[Path, Path]:
    with open(seal_data.gallery_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    a, b = rows[0], next(r for r in rows[1:] if r["identity"] == rows[0]["identity"])
    return seal_data.gallery_csv.parent / a["path"], seal_data.gallery_csv.parent / b["path"]


def test_explain_cli_writes_a_png(seal_data, fast_profile, tmp_path):
    first, second = _two_seal_images(seal_data)
    out = tmp_path / "m.png"
    result = run_cli("explain", str(first), str(second), "--profile", str(fast_profile), "--out", str(out),
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "sift-mnn: score" in result.stdout and "matches" in result.stdout and "m.png" in result.stdout
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width <= 1600 and im.height > CAPTION_HEIGHT


def test_explain_cli_usage_errors_exit_2(seal_data, fast_profile, tmp_path):
    first, _ = _two_seal_images(seal_data)
    missing = tmp_path / "nope.jpg"
    result = run_cli("explain", str(first), str(missing), "--profile", str(fast_profile), "--out", str(tmp_path / "m.png"))
    assert result.returncode == 2
    assert "GALLERY_IMAGE" in result.stderr and "nope.jpg" in result.stderr and "no such file" in result.stderr
    result = run_cli("explain", str(first), str(first), "--profile", str(fast_profile), "--pipeline", "bogus",
                     "--out", str(tmp_path / "m.png"))
    assert result.returncode == 2 and "'bogus'" in result.stderr and "sift-mnn" in result.stderr
    assert not (tmp_path / "m.png").exists()
    result = run_cli("explain", str(first), str(first), "--profile", str(fast_profile), "--out", str(tmp_path / "m.gif"))
    assert result.returncode == 2 and "--out" in result.stderr and ".gif" in result.stderr
    assert "Traceback" not in result.stderr and os.listdir(tmp_path) == []


def test_explain_pipeline_builds_only_that_pipeline(seal_data, fast_profile, tmp_path, monkeypatch):
    """A second pipeline whose extractor needs a weight that is not installed does not block --pipeline."""
    from reid_engine.commands.explain import explain_files
    from reid_engine.registry import PluginTable
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.weights import MissingWeights

    two = tmp_path / "two.toml"
    two.write_text(fast_profile.read_text() + textwrap.dedent('''
        [[pipelines]]
        name = "hardnet-mnn"
        extractor = { plugin = "hesaffnet-hardnet", max_keypoints = 100 }
        matcher = { plugin = "mnn" }
        scorer = { plugin = "ransac-inliers" }
    '''))
    empty_home = {"TORCH_HOME": str(tmp_path / "empty-torch-home")}
    first, second = _two_seal_images(seal_data)
    out = tmp_path / "m.jpg"
    result = run_cli("explain", str(first), str(second), "--profile", str(two), "--pipeline", "sift-mnn",
                     "--out", str(out), "--device", "cpu", env=empty_home)
    assert result.returncode == 0, result.stderr
    assert "sift-mnn: score" in result.stdout and "hardnet" not in result.stdout + result.stderr
    with Image.open(out) as im:
        assert im.format == "JPEG"
    # the same profile without --pipeline builds both, and stops at the missing weight
    monkeypatch.setenv("TORCH_HOME", empty_home["TORCH_HOME"])
    with pytest.raises(MissingWeights, match="HardNet"):
        explain_files(str(first), str(second), load_profile_file(two), PluginTable.discover(), tmp_path / "all.png")
    assert not list(tmp_path.glob("all*"))


def test_laf_ellipse_is_the_image_of_the_unit_circle():
    from reid_engine.outputs.drawing import laf_ellipses

    theta = np.radians(30)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    a = rot @ np.diag([30.0, 10.0]) @ rot.T @ rot  # any A whose singular values are 30 and 10 along rot
    laf = np.concatenate([a, [[50.0], [60.0]]], axis=1)[None].astype(np.float32)
    centres, axes, angles = laf_ellipses(laf, np.array([0]), np.diag([2.0, 2.0]), np.array([[100.0, 120.0]]), 3.0, 1000)
    assert centres[0].tolist() == [100.0, 120.0]
    assert axes[0] == pytest.approx([60.0, 20.0], abs=1e-3)  # semi-axes scaled with the drawing
    off = (angles[0] - 30.0) % 180.0
    assert min(off, 180.0 - off) == pytest.approx(0.0, abs=1e-3)
    circle = np.stack([np.cos(np.linspace(0, 6.28, 50)), np.sin(np.linspace(0, 6.28, 50))])
    boundary = 2.0 * (a @ circle)  # kornia's boundary points, drawn at scale 2
    phi = np.radians(angles[0])
    along = np.array([[np.cos(phi), np.sin(phi)], [-np.sin(phi), np.cos(phi)]]) @ boundary
    assert ((along[0] / axes[0][0]) ** 2 + (along[1] / axes[0][1]) ** 2) == pytest.approx(np.ones(50), abs=1e-3)


def test_explain_by_gallery_image_id_uses_the_database(seal_data, fast_profile, tmp_path):
    from reid_engine.commands.explain import explain_files
    from reid_engine.errors import UsageError
    from reid_engine.inputs.enrolment import enroll_manifest
    from reid_engine.inputs.manifests import load_manifest
    from reid_engine.registry import PluginTable
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.store.database import GalleryDatabase

    table, profile = PluginTable.discover(), load_profile_file(fast_profile)
    db = tmp_path / "g.db"
    with GalleryDatabase(db) as database:
        enroll_manifest(database, load_manifest(seal_data.gallery_csv, "gallery", table), [])
        first, second = database.gallery()[:2]
    written = explain_files(first.path, second.image_id, profile, table, tmp_path / "m.png", db=db)
    assert [w.path for w in written] == [tmp_path / "m.png"] and (tmp_path / "m.png").is_file()
    assert written[0].evidence.inliers_known and written[0].evidence.score == written[0].evidence.n_inliers
    with GalleryDatabase(db) as database:
        assert database.counts()["cached_features"] == 2  # both images' features are now in its cache
    with pytest.raises(UsageError, match="no image enrolled in"):
        explain_files(first.path, "no_such_id", profile, table, tmp_path / "x.png", db=db)
    with pytest.raises(UsageError, match="--db"):
        explain_files(first.path, second.image_id, profile, table, tmp_path / "x.png", db=tmp_path / "none.db")
