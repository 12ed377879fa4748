"""Landmark-Id (seed paper 002): the net with heatmap channels (engine/embedding/model.py), its
batch and loss (engine/training/landmark_id.py), ``train embedder --method landmark-id`` and the
trained embedder's use of given or predicted landmarks (plugins/embedders/trained.py)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from reid_engine.embedding.model import EmbedderSpec, ReidNet, imagenet_start
from reid_engine.records import ImageRecord
from reid_engine.synthetic.seals import LANDMARKS
from tests.conftest import fast_profile_with, run_cli

TRAINED_EMBEDDER = """
[trained_embedder]
use = "when-trained"
method = "landmark-id"
image_size = 64
epochs = 1
weight = 1.0
calibration = { midpoint = 0.5, width = 0.1 }
"""


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory, fast_profile):
    return fast_profile_with(fast_profile, tmp_path_factory.mktemp("landmark-profile"), "landmark-test",
                             TRAINED_EMBEDDER)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, seal_data, profile_file):
    folder = tmp_path_factory.mktemp("landmark-trained")
    db, out = folder / "g.db", folder / "model.pt"
    done = run_cli("train", "embedder", "--profile", str(profile_file), "--gallery", str(seal_data.gallery_csv),
                   "--db", str(db), "--out", str(out), "--val-share", "0", "--seed", "1")  # keeps the last epoch
    assert done.returncode == 0, done.stderr
    return db, out


def test_heatmap_channels_start_at_zero_so_the_imagenet_start_sees_the_photo_as_before():
    plain, marked = ReidNet(EmbedderSpec(image_size=64)), ReidNet(EmbedderSpec(image_size=64, landmarks=("a", "b")))
    imagenet_start(plain), imagenet_start(marked)
    plain.eval(), marked.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = plain.backbone.forward_features(x)
        b = marked.backbone.forward_features(torch.cat([x, torch.zeros(2, 2, 64, 64)], 1))
    assert torch.allclose(a, b, atol=1e-5)


def test_given_heatmaps_are_used_only_where_given():
    torch.manual_seed(0)
    net = ReidNet(EmbedderSpec(image_size=64, landmarks=("a", "b"))).eval()
    with torch.no_grad():
        for p in net.backbone.parameters():  # make the heatmap channels matter
            p.add_(0.01 * torch.randn_like(p))
        x, maps = torch.randn(2, 3, 64, 64), torch.rand(2, 2, 64, 64)
        predicted = net(x)
        mixed = net(x, maps, torch.tensor([1.0, 0.0]))
        given = net(x, maps, torch.tensor([1.0, 1.0]))
    assert torch.allclose(mixed[1], predicted[1], atol=1e-5)  # not given: the locator's heatmaps
    assert torch.allclose(mixed[0], given[0], atol=1e-5) and not torch.allclose(given[0], predicted[0], atol=1e-3)
    assert net.locate(x).shape == (2, 2, 8, 8) and net.reconstruct(torch.randn(2, 512)).shape == (2, 2, 64, 64)


def test_the_random_crop_moves_the_heatmaps_with_the_photo():
    from reid_engine.training.landmark_id import landmark_batch
    from reid_engine.training.train_embedder import make_augment_parts

    torch.manual_seed(0)
    square = np.full((80, 80, 3), 128, np.uint8)
    square[18:23, 58:63] = (255, 0, 0)  # a red dot at the landmark (x 60, y 20)
    points = np.array([[[60, 20], [np.nan, np.nan]]], np.float32)
    geometric, _ = make_augment_parts(64, flip=False)
    spec = EmbedderSpec(image_size=64, landmarks=("a", "b"), mean=(0, 0, 0), std=(1, 1, 1))
    for _ in range(5):
        batch = landmark_batch(square[None], points, np.array([True]), geometric, lambda t: t, spec,
                               np.random.default_rng(0))
        assert batch.x.shape == (1, 3, 64, 64) and batch.clean.shape == (1, 2, 64, 64)
        red = np.argwhere(batch.x[0, 0].numpy() - batch.x[0, 1].numpy() > 0.5)
        blob = np.argwhere(batch.clean[0, 0].numpy() > 0.5)
        if len(red):  # the dot survived the crop: the heatmap's disk is on it
            assert np.abs(red.mean(0) - blob.mean(0)).max() < 3.0
        assert not batch.clean[0, 1].any()


def test_train_landmark_id_stores_a_model_with_the_landmarks(trained):
    from reid_engine.embedding.model import read_model_file

    _, out = trained
    net, meta, _ = read_model_file(out)
    assert net.spec.method == "landmark-id" and net.spec.landmarks == tuple(sorted(LANDMARKS))
    assert hasattr(net, "locator") and hasattr(net, "reconstruct")


def test_landmark_id_without_keypoints_is_refused_and_stores_nothing(tmp_path, profile_file):
    from reid_engine.store.database import GalleryDatabase
    from tests.conftest import write_image

    rng = np.random.default_rng(0)
    for ident in ("a", "b", "c"):
        for i in range(2):
            write_image(tmp_path / "g" / ident / f"{i}.png", rng.integers(0, 255, (80, 80, 3), dtype=np.uint8))
    done = run_cli("train", "embedder", "--profile", str(profile_file), "--gallery", str(tmp_path / "g"),
                   "--db", str(tmp_path / "g.db"))
    assert done.returncode == 2 and "keypoints" in done.stderr and "Traceback" not in done.stderr
    with GalleryDatabase(tmp_path / "g.db") as db:
        assert db.get_model("trained-embedder-landmark-test") is None


def test_torch_and_onnx_agree_with_given_and_predicted_landmarks(trained, seal_data, tmp_path):
    from reid_engine.inputs.images import read_image
    from reid_engine.registry import PluginTable

    _, out = trained
    onnx = tmp_path / "m.onnx"
    done = run_cli("export", "onnx", str(onnx), "--model", str(out))
    assert done.returncode == 0, done.stderr
    with open(seal_data.gallery_csv, newline="") as f:
        rows = list(csv.DictReader(f))[:3]
    root = seal_data.gallery_csv.parent
    images = [read_image(ImageRecord(r["image_id"], root / r["path"], mask_path=root / r["mask_path"],
                                     keypoints=r["keypoints"] if i != 1 else None)) for i, r in enumerate(rows)]
    spec = PluginTable.discover().get("embedder", "trained-embedder")

    def embed(**options):
        return spec.build(spec.make_config({"model": str(out), **options}), "cpu").embed(images)

    given, predicted = embed(), embed(landmarks="predicted")
    assert np.allclose(given, embed(runtime="onnx"), atol=1e-4)
    assert np.allclose(given, spec.build(spec.make_config({"model": str(onnx), "runtime": "onnx"}), "cpu").embed(images),
                       atol=1e-4)
    assert np.allclose(predicted, embed(runtime="onnx", landmarks="predicted"), atol=1e-4)
    assert np.allclose(given[1], predicted[1], atol=1e-5)  # no keypoints: predicted either way
    assert not np.array_equal(given[0], predicted[0])  # keypoints given: its own heatmaps


@pytest.mark.slow  # 40 s; the plugin's use of keypoints is tested above, and runs with a trained embedder elsewhere
def test_a_run_uses_the_landmark_id_model(trained, seal_data, profile_file, tmp_path):
    db, _ = trained
    done = run_cli("run", "--profile", str(profile_file), "--query", str(seal_data.query_csv), "--db", str(db),
                   "--out", str(tmp_path / "out"), "--explain-top", "0")
    assert done.returncode == 0, done.stderr
    assert "re-ID embedder trained for profile 'landmark-test'" in done.stdout + done.stderr
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(open(seal_data.query_csv).readlines()) - 1
