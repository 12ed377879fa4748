"""engine/segmentation.py and the [segment] step of a run, with a tiny weight-free segmenter
(``bright``: foreground = bright pixels) registered the way a third party's would be."""

from __future__ import annotations

import csv
import json
import textwrap
import types
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid_engine.components import build_plugin
from reid_engine.inputs.images import read_image
from reid_engine.inputs.segmentation import Segmentation, pick_instance
from reid_engine.plugins.segmenters.isnet import clean_mask
from reid_engine.records import INSTANCE_KEY, ImageRecord
from reid_engine.registry import ConfigError, PluginSpec, PluginTable, hookimpl
from reid_engine.registry.profiles import PluginRef, SegmentSettings, parse_profile
from reid_engine.store.database import GalleryDatabase


@dataclass(frozen=True)
class BrightConfig:
    min_blob: float = 0.002


class Bright:
    """Foreground probability = brightness; counts its (expensive, here cheap) network calls."""

    model_id = "bright-v1"
    calls = 0

    def __init__(self, config: BrightConfig) -> None:
        self.config = config

    def probability(self, image):
        Bright.calls += 1
        return image.rgb.mean(axis=2).astype(np.float32) / 255.0

    def clean(self, prob):
        return clean_mask(prob, 0.5, self.config.min_blob, 0)


@hookimpl
def _register(register):
    register(PluginSpec(name="bright", kind="segmenter", version="1", config_cls=BrightConfig,
                        build=lambda config, device: Bright(config), description="bright pixels (tests)"))


def bright_table() -> PluginTable:
    module = types.ModuleType("bright_segmenter")
    module.register_segmenters = _register
    table = PluginTable.discover()
    table.add_module(module, source="tests", name="bright")
    return table


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A bright random pelage-like pattern, uint8 (h, w, 3), values 140..255."""
    import cv2

    noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
    noise = (noise - noise.min()) / (np.ptp(noise) + 1e-6)
    grey = (140 + 115 * noise).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def photo(path: Path, animals: list[tuple[np.ndarray, int, int]], hw=(240, 320)) -> Path:
    """Dark background with each (texture, top, left) pasted in; written as PNG."""
    rgb = np.full((*hw, 3), 25, np.uint8)
    for tex, top, left in animals:
        rgb[top:top + tex.shape[0], left:left + tex.shape[1]] = tex
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def two_animals(tmp_path):
    rng = np.random.default_rng(0)
    big, small = texture(rng, 120, 160), texture(rng, 50, 60)
    return photo(tmp_path / "two.png", [(big, 100, 20), (small, 10, 250)]), big, small


def settings(**kw) -> SegmentSettings:
    return SegmentSettings(segmenter=PluginRef("bright"), **kw)


def segmentation(table, db=None, **kw) -> Segmentation:
    s = settings(**kw)
    return Segmentation(s, build_plugin(table, "segmenter", s.segmenter, "cpu", "test"), db)


def test_instance_policies_pick_the_largest_the_central_or_the_named_one():
    masks = [np.zeros((100, 100), bool) for _ in range(2)]
    masks[0][0:40, 0:60] = True      # largest, in a corner
    masks[1][40:60, 40:60] = True    # small, in the middle
    record = ImageRecord("x", Path("x.png"))
    assert pick_instance(masks, "largest", record) == 0
    assert pick_instance(masks, "central", record) == 1
    assert pick_instance(masks, "each", replace(record, extra={INSTANCE_KEY: "1"})) == 1
    assert pick_instance(masks, "each", record) == 0  # a gallery photo: its largest animal


def test_tiny_or_missing_animal_falls_back_and_says_why():
    table = bright_table()
    record = ImageRecord("x", Path("x.png"))
    prob = np.zeros((100, 100), np.float32)
    prob[10:15, 10:15] = 1.0  # 0.25 % of the photo
    whole = segmentation(table, min_coverage=0.02).choose(prob, record)
    assert whole.mask is None and "min_coverage" in whole.view.fallback and whole.view.fallback.startswith("whole")
    box = segmentation(table, min_coverage=0.02, fallback="centre-box", centre_box=0.5).choose(prob, record)
    assert box.mask is not None and box.mask.mean() == pytest.approx(0.25)
    assert box.view.fallback.startswith("centre box")
    empty = segmentation(table).choose(np.zeros((50, 50), np.float32), record)
    assert empty.mask is None and "no animal" in empty.view.fallback
    assert "fallback" in empty.view.describe()


def test_crop_puts_the_animal_into_crop_side_pixels_and_the_mask_follows(two_animals):
    path, big, _ = two_animals
    table = bright_table()
    image = read_image(ImageRecord("two", path))
    out = segmentation(table, crop=True, crop_margin=0.0, crop_side=480).apply(image)
    assert max(out.rgb.shape[:2]) == 480
    assert out.mask is not None and out.mask.shape == out.rgb.shape[:2]
    assert out.mask.mean() > 0.95  # the crop is the big animal's box: nearly all animal
    assert out.rgb.shape[1] / out.rgb.shape[0] == pytest.approx(160 / 120, rel=0.02)
    assert out.view.instances == 2 and out.view.instance == 0 and out.view.crop is not None
    uncropped = segmentation(table).apply(image)
    assert uncropped.rgb.shape == image.rgb.shape
    assert uncropped.mask.sum() == pytest.approx(120 * 160, rel=0.02)


def test_the_network_runs_once_per_photo_and_views_come_from_the_cache(two_animals, tmp_path):
    path, _, _ = two_animals
    table = bright_table()
    record = ImageRecord("two", path)
    with GalleryDatabase(tmp_path / "g.db") as db:
        first = segmentation(table, db, instance="central")
        view = first.apply(read_image(record)).view
        assert first.computed == 1
        Bright.calls = 0
        again = segmentation(table, db, instance="central", min_coverage=0.001)  # cleaning options change: no re-run
        assert again.apply(read_image(record)).view.instance == view.instance
        assert again.computed == 0 and Bright.calls == 0
        assert again.view_of(record, read_image(record).content_hash) == view


def test_a_view_chosen_while_extracting_is_remembered_not_read_and_cleaned_again(two_animals, tmp_path, monkeypatch):
    path, _, _ = two_animals
    table = bright_table()
    record = ImageRecord("two", path)
    with GalleryDatabase(tmp_path / "g.db") as db:
        seg = segmentation(table, db, instance="central")
        image = read_image(record)
        view = seg.apply(image).view
        monkeypatch.setattr(Segmentation, "cached_probability", lambda *a: pytest.fail("the mask was read again"))
        assert seg.view_of(record, image.content_hash) == view
        # another animal of the same photo, or another photo, is not taken for it
        second = replace(record, extra={INSTANCE_KEY: 1})
        with pytest.raises(pytest.fail.Exception, match="read again"):
            seg.view_of(second, image.content_hash)


def test_a_run_segments_through_one_object_per_database_and_settings(tmp_path):
    from reid_engine.components import build_components
    from reid_engine.inputs.views import segmentation_of

    table = bright_table()
    profile = parse_profile({"profile": {"name": "bright"}, "segment": {"segmenter": "bright"}}, "test")
    components = build_components(profile, table, "cpu")
    with GalleryDatabase(tmp_path / "a.db") as a, GalleryDatabase(tmp_path / "b.db") as b:
        assert segmentation_of(components, profile, a) is segmentation_of(components, profile, a)
        assert segmentation_of(components, profile, b) is not segmentation_of(components, profile, a)
        other = replace(profile, segment=replace(profile.segment, instance="central"))
        assert segmentation_of(components, other, a) is not segmentation_of(components, profile, a)


def test_gallery_views_are_stored_once_and_read_back_until_what_they_depend_on_changes(two_animals, tmp_path,
                                                                                        monkeypatch):
    from reid_engine.inputs.animals import animal_views

    path, _, _ = two_animals
    table = bright_table()
    records = [ImageRecord("two", path), ImageRecord("boxed", path, bbox=(0.0, 0.0, 40.0, 30.0))]
    with GalleryDatabase(tmp_path / "g.db") as db:
        seg = segmentation(table, db, instance="central")
        photos = [(r, read_image(r).content_hash) for r in records]
        assert animal_views(seg, photos, remember=True)["two"].source == "none"  # no mask cached yet: not stored
        seg.apply(read_image(records[0]))
        first = animal_views(seg, photos, remember=True)
        assert first["two"].source == "bright" and first["boxed"].source == "manifest"
        monkeypatch.setattr(Segmentation, "view_of", lambda *a: pytest.fail("views were not read back"))
        assert animal_views(segmentation(table, db, instance="central"), photos, remember=True) == first
        monkeypatch.undo()
        other = segmentation(table, db, instance="largest")  # other settings: another entry
        assert other.views_key(photos) != seg.views_key(photos)
        assert other.views_key(photos[:1]) != seg.views_key(photos[:1])
        assert animal_views(other, photos, remember=True)["two"].instance == 0


def test_a_manifest_box_wins_over_the_segmenter(two_animals):
    path, _, _ = two_animals
    table = bright_table()
    Bright.calls = 0
    out = segmentation(table, crop=True).apply(read_image(ImageRecord("two", path, bbox=(250, 10, 60, 50))))
    assert Bright.calls == 0 and out.view.source == "manifest"
    assert out.rgb.shape[:2] == (56, 66)  # the 50 x 60 box + 5 % of it on each side, at the decoded pixels


def test_segment_settings_are_validated():
    base = {"profile": {"name": "p"}}
    ok = parse_profile({**base, "segment": {"segmenter": {"plugin": "isnet", "threshold": 0.4}, "crop": True,
                                            "crop_side": 640, "instance": "each"}}, "p.toml")
    assert ok.segment.segmenter.plugin == "isnet" and ok.segment.crop_side == 640
    assert parse_profile(base, "p.toml").segment is None
    for bad, word in (({"instance": "biggest"}, "instance"), ({"crop_side": 10}, "crop_side"),
                      ({"min_coverage": 1.5}, "min_coverage"), ({"colour": 1}, "colour")):
        with pytest.raises(ConfigError, match=word):
            parse_profile({**base, "segment": bad}, "p.toml")


PROFILE = """
[profile]
name = "bright-test"

[segment]
segmenter = "bright"
instance = "each"
crop = true
crop_side = 320

[shortlist]
embedder = { plugin = "fisher-vector", pca_dim = 8, n_components = 2, fit_descriptors = 2000 }
top_b = 4

[[pipelines]]
name = "sift"
extractor = { plugin = "hessaff-rootsift", resize = 320, max_keypoints = 300 }
matcher = { plugin = "mnn", ratio = 0.9 }
scorer = { plugin = "ransac-inliers" }
calibration = { midpoint = 8.0, width = 2.0 }
"""


def test_run_makes_each_animal_a_query_and_says_which_pixels_it_used(tmp_path):
    from reid_engine.commands.run import run
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.runs import RunOptions

    rng = np.random.default_rng(1)
    pelts = {name: texture(rng, 110, 150) for name in ("ann", "bob", "cy", "dee")}
    rows = []
    for name, tex in pelts.items():
        for k, (top, left) in enumerate([(30, 40), (90, 140)]):
            shifted = np.roll(tex, 3 * k, axis=1)
            rows.append((f"{name}{k}", photo(tmp_path / f"{name}{k}.png", [(shifted, top, left)]), name))
    with open(tmp_path / "gallery.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "path", "identity"])
        w.writerows(rows)
    # one query photo with bob (large) and dee (small), one with nothing bright at all
    small_dee = pelts["dee"][10:70, 20:110]
    photo(tmp_path / "pair.png", [(pelts["bob"], 120, 10), (small_dee, 10, 220)], hw=(260, 340))
    photo(tmp_path / "empty.png", [])
    with open(tmp_path / "query.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "path"])
        w.writerows([("pair", tmp_path / "pair.png"), ("empty", tmp_path / "empty.png")])
    profile_path = tmp_path / "p.toml"
    profile_path.write_text(textwrap.dedent(PROFILE))
    out = tmp_path / "out"
    result = run(RunOptions(profile=load_profile_file(profile_path), db=tmp_path / "g.db", out=out,
                            gallery=tmp_path / "gallery.csv", query=tmp_path / "query.csv", device="cpu",
                            write_report=True), table=bright_table(), progress=False)
    by_id = {p.image_id: p for p in result.predictions}
    assert set(by_id) == {"pair#1", "pair#2", "empty"}
    assert by_id["pair#1"].candidates[0].identity == "bob"
    assert by_id["pair#2"].candidates[0].identity == "dee"
    assert "instance 2 of 2" in by_id["pair#2"].animal and "cropped" in by_id["pair#2"].animal
    assert "fallback whole photo (no animal found)" in by_id["empty"].animal
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert {r["image_id"]: r["animal"] for r in rows}["empty"] == by_id["empty"].animal
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["gallery_masked"] == 8 and summary["counts"]["query_mask_fallbacks"] == 1
    assert any("fallback" in n for n in summary["notices"])
    assert summary["segment"]["instance"] == "each" and summary["segment"]["segmenter"]["plugin"] == "bright"
    assert not any("drawings" in n for n in summary["notices"])  # the report drew the cropped views
    assert (out / "report.html").stat().st_size > 10_000
    assert by_id["pair#2"].animal in (out / "report.html").read_text()  # each query card names its pixels


def test_segment_command_refuses_a_profile_without_a_segmenter_and_a_missing_folder(tmp_path):
    from tests.conftest import run_cli

    no_segmenter = run_cli("segment", str(tmp_path), "--species", "seal", "--db", str(tmp_path / "g.db"))
    assert no_segmenter.returncode == 2 and "has no [segment] segmenter" in no_segmenter.stderr
    missing = run_cli("segment", str(tmp_path / "nope"), "--species", "seal")
    assert missing.returncode == 2 and "nope: no such file or folder" in missing.stderr
    assert "Traceback" not in no_segmenter.stderr + missing.stderr


def test_segment_manifest_reports_views_and_draws_the_grid(two_animals, tmp_path):
    from reid_engine.commands.segment import segment_manifest
    from reid_engine.registry.profiles import load_profile_file

    path, _, _ = two_animals
    photo(tmp_path / "empty.png", [])
    profile_path = tmp_path / "p.toml"
    profile_path.write_text(textwrap.dedent(PROFILE))
    records = [ImageRecord("two", path), ImageRecord("empty", tmp_path / "empty.png"),
               ImageRecord("gone", tmp_path / "gone.png")]
    summary = segment_manifest(load_profile_file(profile_path), records, tmp_path / "g.db", bright_table(),
                               grid=tmp_path / "grid.png", sample=2)
    assert set(summary.views) == {"two", "empty"} and list(summary.fallbacks) == ["empty"]
    assert summary.computed == 2 and [e.image_id for e in summary.errors] == ["gone"]
    grid = Image.open(summary.grid)
    assert grid.size[0] > 600 and grid.size[1] > 100


def test_each_animal_splits_a_sequence_by_where_its_animals_lie(tmp_path):
    """A burst of two photos of the same two animals, whose sizes swap (so '#1', the largest,
    is the left animal in one photo and the right in the other), and a third photo of the left
    one alone: each animal gets its own sequence, the same in every photo."""
    from reid_engine.inputs.animals import each_animal
    from reid_engine.registry.profiles import parse_profile

    rng = np.random.default_rng(2)
    left_big, left_small, right_big, right_small = (texture(rng, *hw) for hw in ((120, 140), (60, 80), (120, 140),
                                                                                 (60, 80)))
    paths = [photo(tmp_path / "a.png", [(left_big, 60, 10), (right_small, 80, 230)]),
             photo(tmp_path / "b.png", [(left_small, 90, 20), (right_big, 50, 170)]),
             photo(tmp_path / "c.png", [(left_big, 70, 15)])]
    records = [ImageRecord(p.stem, p, sequence="burst") for p in paths]
    records.append(ImageRecord("lone", paths[2], sequence="other"))
    profile = parse_profile({"profile": {"name": "t"}, "segment": {"segmenter": "bright", "instance": "each"}}, "t")
    queries = each_animal(records, segmentation(bright_table(), instance="each"), profile, [])
    by_id = {q.image_id: q.sequence for q in queries}
    assert by_id == {"a#1": "burst#1", "a#2": "burst#2", "b#1": "burst#2", "b#2": "burst#1", "c": "burst#1",
                     "lone": "other"}


def test_tracks_follow_positions_and_start_new_ones_for_far_animals():
    from reid_engine.inputs.tracks import track_instances

    assert track_instances([]) == []
    assert track_instances([[(0.2, 0.5)], [(0.8, 0.5), (0.25, 0.5)], [(0.78, 0.45)]]) == [[0], [1, 0], [1]]
    assert track_instances([[(0.1, 0.1), (0.9, 0.9)], [(0.5, 0.1)]]) == [[0, 1], [2]]  # too far from both
    assert track_instances([[(0.3, 0.5)], [(0.31, 0.5)]]) == [[0], [0]]
