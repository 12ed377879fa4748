"""Tests of the deterministic synthetic ringed-seal data set generator."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid_engine.synthetic.seals import (
    GALLERY_COLUMNS,
    GENERATOR_VERSION,
    QUERY_COLUMNS,
    SealDatasetConfig,
    SyntheticDataset,
    generate_seal_dataset,
)

SMALL = SealDatasetConfig(n_known=4, n_unknown=2, gallery_per_individual=2, queries_per_known=2,
                          queries_per_unknown=2, image_size=(192, 256), seed=3)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    return generate_seal_dataset(tmp_path_factory.mktemp("seals") / "data", SMALL)


def test_returns_paths_and_config(dataset: SyntheticDataset) -> None:
    assert dataset.config == SMALL
    assert dataset.gallery_csv == dataset.root / "gallery.csv"
    assert dataset.query_csv == dataset.root / "query.csv"
    meta = json.loads((dataset.root / "dataset.json").read_text())
    assert meta["version"] == GENERATOR_VERSION
    assert SealDatasetConfig.from_json(meta["config"]) == SMALL


def test_csv_columns_and_counts(dataset: SyntheticDataset) -> None:
    g_cols, gallery = _rows(dataset.gallery_csv)
    q_cols, queries = _rows(dataset.query_csv)
    assert tuple(g_cols) == GALLERY_COLUMNS
    assert tuple(q_cols) == QUERY_COLUMNS
    assert "identity" not in q_cols
    assert len(gallery) == SMALL.n_known * SMALL.gallery_per_individual
    assert len(queries) == (SMALL.n_known * SMALL.queries_per_known
                            + SMALL.n_unknown * SMALL.queries_per_unknown)
    ids = [r["image_id"] for r in gallery + queries]
    assert len(set(ids)) == len(ids)
    for r in gallery + queries:
        assert r["species"] == "ringed_seal"
        assert r["orientation"] == "left"
        assert r["sequence"].startswith("enc_")


def test_query_labels_and_ids_hide_identity(dataset: SyntheticDataset) -> None:
    _, gallery = _rows(dataset.gallery_csv)
    _, queries = _rows(dataset.query_csv)
    known = {r["identity"] for r in gallery}
    assert len(known) == SMALL.n_known
    truths = [r["truth"] for r in queries]
    assert sum(t == "new_individual" for t in truths) == SMALL.n_unknown * SMALL.queries_per_unknown
    assert {t for t in truths if t != "new_individual"} == known
    for r in queries:
        assert r["image_id"].startswith("q_")
        assert not any(name in r["image_id"] for name in known)


def test_unknown_individuals_absent_from_gallery(dataset: SyntheticDataset) -> None:
    _, gallery = _rows(dataset.gallery_csv)
    _, queries = _rows(dataset.query_csv)
    gallery_sequences = {r["sequence"] for r in gallery}
    unknown_sequences = {r["sequence"] for r in queries if r["truth"] == "new_individual"}
    assert unknown_sequences and not unknown_sequences & gallery_sequences
    # Each unknown seal's queries come from one encounter of its own.
    assert len(unknown_sequences) == SMALL.n_unknown


def test_known_queries_come_from_other_encounters(dataset: SyntheticDataset) -> None:
    _, gallery = _rows(dataset.gallery_csv)
    _, queries = _rows(dataset.query_csv)
    by_identity: dict[str, set[str]] = {}
    for r in gallery:
        by_identity.setdefault(r["identity"], set()).add(r["sequence"])
    for r in queries:
        if r["truth"] != "new_individual":
            assert r["sequence"] not in by_identity[r["truth"]]
    # A sequence never mixes individuals.
    owner: dict[str, str] = {}
    for r in gallery:
        assert owner.setdefault(r["sequence"], r["identity"]) == r["identity"]


def test_files_exist_with_right_size_and_format(dataset: SyntheticDataset) -> None:
    h, w = SMALL.image_size
    _, gallery = _rows(dataset.gallery_csv)
    _, queries = _rows(dataset.query_csv)
    for r in gallery + queries:
        img = Image.open(dataset.root / r["path"])
        assert img.mode == "RGB" and img.size == (w, h)
        for col in ("mask_path", "pattern_path"):
            m = Image.open(dataset.root / r[col])
            assert m.mode == "L" and m.size == (w, h)
            assert set(np.unique(np.asarray(m)).tolist()) <= {0, 255}


def test_masks_are_plausible_and_pattern_inside_body(dataset: SyntheticDataset) -> None:
    _, gallery = _rows(dataset.gallery_csv)
    _, queries = _rows(dataset.query_csv)
    h, w = SMALL.image_size
    for r in gallery + queries:
        body = np.asarray(Image.open(dataset.root / r["mask_path"])) > 0
        pattern = np.asarray(Image.open(dataset.root / r["pattern_path"])) > 0
        assert 0.02 < body.mean() < 0.6, r["image_id"]
        assert pattern.sum() > 0.03 * body.sum(), r["image_id"]
        assert (pattern & body).sum() >= 0.98 * pattern.sum(), r["image_id"]


def test_two_photos_of_one_individual_differ(dataset: SyntheticDataset) -> None:
    _, gallery = _rows(dataset.gallery_csv)
    first = [r for r in gallery if r["identity"] == gallery[0]["identity"]]
    a, b = (np.asarray(Image.open(dataset.root / r["path"]), np.float32) for r in first[:2])
    assert np.abs(a - b).mean() > 5.0
    ma, mb = (np.asarray(Image.open(dataset.root / r["mask_path"])) for r in first[:2])
    assert not np.array_equal(ma, mb)


def test_deterministic_bytes(dataset: SyntheticDataset, tmp_path: Path) -> None:
    again = generate_seal_dataset(tmp_path / "again", SMALL)
    assert _all_files(again.root) == _all_files(dataset.root)


def test_other_seed_gives_other_images(dataset: SyntheticDataset, tmp_path: Path) -> None:
    from dataclasses import replace

    other = generate_seal_dataset(tmp_path / "other", replace(SMALL, seed=SMALL.seed + 1, n_unknown=0))
    a = (dataset.root / "images" / "g_seal_000_1.png").read_bytes()
    b = (other.root / "images" / "g_seal_000_1.png").read_bytes()
    assert a != b


def test_fast_path_does_not_rewrite(tmp_path: Path) -> None:
    config = SealDatasetConfig(n_known=2, n_unknown=1, gallery_per_individual=1,
                               queries_per_known=1, queries_per_unknown=1,
                               image_size=(128, 160), seed=1)
    out = tmp_path / "data"
    first = generate_seal_dataset(out, config)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    second = generate_seal_dataset(out, config)
    assert second == first
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps


def test_regenerates_over_other_config_and_incomplete_data(tmp_path: Path) -> None:
    config = SealDatasetConfig(n_known=2, n_unknown=1, gallery_per_individual=1,
                               queries_per_known=1, queries_per_unknown=1,
                               image_size=(128, 160), seed=1)
    out = tmp_path / "data"
    generate_seal_dataset(out, config)
    from dataclasses import replace

    bigger = replace(config, n_known=3)
    ds = generate_seal_dataset(out, bigger)
    _, gallery = _rows(ds.gallery_csv)
    assert len(gallery) == 3
    assert SealDatasetConfig.from_json(json.loads((out / "dataset.json").read_text())["config"]) == bigger
    # A missing image makes the data set incomplete: it is rebuilt.
    victim = out / gallery[0]["path"]
    victim.unlink()
    generate_seal_dataset(out, bigger)
    assert victim.is_file()
    # No temporary folders are left next to it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_refuses_to_overwrite_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    config = SealDatasetConfig(n_known=1, n_unknown=0, gallery_per_individual=1,
                               queries_per_known=1, image_size=(128, 160))
    with pytest.raises(FileExistsError):
        generate_seal_dataset(out, config)
    assert (out / "notes.txt").read_text() == "mine"


def test_difficulty_knobs(tmp_path: Path) -> None:
    """blur and occlusion do what they say on the same seals; out-of-range values are refused."""
    from dataclasses import replace

    from scipy import ndimage

    base = SealDatasetConfig(n_known=3, n_unknown=0, gallery_per_individual=2, queries_per_known=1,
                             image_size=(160, 224), seed=4)

    def sharpness_and_body(config, name):
        ds = generate_seal_dataset(tmp_path / name, config)
        _, rows = _rows(ds.gallery_csv)
        grey = [np.asarray(Image.open(ds.root / r["path"]).convert("L"), np.float32) for r in rows]
        body = [np.asarray(Image.open(ds.root / r["mask_path"])) > 0 for r in rows]
        # mid-frequency detail (a difference of Gaussians: defocus removes it, sensor noise barely adds to it)
        detail = [(ndimage.gaussian_filter(g, 1.5) - ndimage.gaussian_filter(g, 3.0)).var() for g in grey]
        return np.mean(detail), np.mean([b.mean() for b in body])

    sharp, body = sharpness_and_body(base, "base")
    blurred, _ = sharpness_and_body(replace(base, blur=2.5), "blur")
    _, hidden = sharpness_and_body(replace(base, occlusion=3.0), "occluded")
    assert blurred < 0.8 * sharp
    assert hidden < body
    with pytest.raises(ValueError, match="pose_variation"):
        generate_seal_dataset(tmp_path / "bad", replace(base, pose_variation=-1.0))


def test_landmarks_lie_on_the_visible_seal_or_are_null(dataset: SyntheticDataset) -> None:
    from scipy import ndimage

    from reid_engine.synthetic.seals import LANDMARKS

    _, gallery = _rows(dataset.gallery_csv)
    _, queries = _rows(dataset.query_csv)
    seen = 0
    for row in gallery + queries:
        points = json.loads(row["keypoints"])
        assert tuple(points) == LANDMARKS
        body = ndimage.binary_dilation(np.asarray(Image.open(dataset.root / row["mask_path"])) > 0, iterations=2)
        for point in points.values():
            if point is not None:
                seen += 1
                assert body[int(point[1]), int(point[0])]
    assert seen >= 0.6 * 3 * len(gallery + queries)  # most landmarks are visible


def test_multi_seal_adds_a_second_seal_with_its_own_rows(dataset: SyntheticDataset, tmp_path: Path) -> None:
    from dataclasses import replace

    group = generate_seal_dataset(tmp_path / "group", replace(SMALL, multi_seal=1.0))
    _, queries = _rows(group.query_csv)
    companions = [r for r in queries if r["image_id"].endswith("b")]
    assert len(companions) == SMALL.n_known * SMALL.queries_per_known + SMALL.n_unknown * SMALL.queries_per_unknown
    by_id = {r["image_id"]: r for r in queries}
    for row in companions:
        main = by_id[row["image_id"][:-1]]
        assert row["path"] == main["path"] and row["mask_path"] != main["mask_path"]
        assert row["sequence"] == main["sequence"] + "b" and row["individual"] != main["individual"]
        known = int(row["individual"].split("_")[1]) < SMALL.n_known
        assert row["truth"] == (row["individual"] if known else "new_individual")
        a, b = (np.asarray(Image.open(group.root / r["mask_path"])) > 0 for r in (main, row))
        assert a.any() and b.any() and not (a & b).any()  # one body hides the other, never both
    # the gallery (no companions there) is unchanged by the knob
    _, gallery = _rows(dataset.gallery_csv)
    for row in gallery:
        assert (group.root / row["path"]).read_bytes() == (dataset.root / row["path"]).read_bytes()
