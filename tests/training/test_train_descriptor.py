"""`reid-engine train descriptor`: patch pairs, HardNet loss, atomic checkpoints, the CLI.

Everything runs on tiny generated photos. TORCH_HOME points at an empty folder, so the
regions come from the weight-free Hessian-affine detector and HardNet starts from random
weights: no file from ../shared is needed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from reid_engine.records import ImageRecord, LoadedImage
from reid_engine.training.checkpoint import (
    CheckpointError,
    read_checkpoint,
    write_checkpoint,
)
from reid_engine.training.descriptor import (
    PhotoRegions,
    WarpConfig,
    draw_pairs,
    photo_regions,
    random_homography,
    sample_pairs,
)
from reid_engine.training.hardnet_loss import hardnet_loss, pair_metrics
from tests.conftest import run_cli, write_image

QUIET_WARP = WarpConfig(brightness=0.0, contrast=0.0, gamma=1.0, max_blur_sigma=0.0, max_noise=0.0,
                        scale_jitter=0.0, shape_jitter=0.0, angle_jitter_deg=0.0, shift_jitter=0.0)


def spots(seed: int, h: int = 192, w: int = 256) -> np.ndarray:
    """A spotted, animal-coat-like grey texture as uint8 RGB (h, w, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    img = 0.45 + 0.1 * np.sin(xx / 40.0 + seed)
    for _ in range(70):
        cx, cy, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2.0, 7.0)
        img += rng.choice([-1, 1]) * rng.uniform(0.2, 0.45) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    img += rng.normal(0, 0.01, img.shape)
    grey = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    for i in range(6):
        write_image(root / f"p{i}.png", spots(i))
    return root


@pytest.fixture
def no_weights(tmp_path):
    """Environment of a machine with no weights installed (weight-free detector, random init)."""
    return {"TORCH_HOME": str(tmp_path / "torch-home")}


def _regions(seed: int = 0) -> PhotoRegions:
    from reid_engine.registry import PluginTable

    spec = PluginTable.discover().get("extractor", "hessaff-rootsift")
    detector = spec.build(spec.make_config({"resize": 256, "max_keypoints": 150, "mr_size": 9.35}), "cpu")
    rgb = spots(seed)
    image = LoadedImage(ImageRecord(f"p{seed}", f"p{seed}.png"), rgb, None, "0" * 64, rgb.shape[:2])
    return photo_regions(image, detector.extract(image).lafs, 256)


# -- patch pairs -------------------------------------------------------------------------------
def test_positive_is_the_same_region_in_the_warped_copy():
    photo = _regions()
    assert photo.lafs.shape[0] > 20 and photo.anchors.shape == (photo.lafs.shape[0], 32, 32)
    pairs = draw_pairs(photo, 0, list(range(photo.lafs.shape[0])), QUIET_WARP, np.random.default_rng(1))
    assert len(pairs) > 10 and pairs.anchors.dtype == torch.uint8 and pairs.positives.shape == pairs.anchors.shape
    a, p = pairs.anchors.float(), pairs.positives.float()
    same = (a - p).abs().mean(dim=(1, 2))
    shuffled = (a - p.roll(1, dims=0)).abs().mean(dim=(1, 2))
    # without photometric change or jitter only resampling differs: far closer than another region
    assert float(same.median()) < 0.35 * float(shuffled.median())


def test_random_homography_is_a_moderate_warp():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h = random_homography((200, 300), WarpConfig(), rng)
        corners = torch.tensor([[0.0, 0, 1], [299, 0, 1], [0, 199, 1], [299, 199, 1]]) @ h.T
        corners = corners[:, :2] / corners[:, 2:]
        assert torch.isfinite(corners).all() and corners.abs().max() < 600


def test_an_epoch_uses_each_region_at_most_once():
    photo = _regions()
    n = photo.lafs.shape[0]
    pairs = sample_pairs([photo], 10 * n, WarpConfig(), np.random.default_rng(0))
    assert 0 < len(pairs) <= n
    assert len(torch.unique(pairs.anchors.flatten(1), dim=0)) == len(pairs)


# -- loss and measures -------------------------------------------------------------------------
def test_hardnet_loss_and_metrics_on_known_descriptors():
    perfect = torch.eye(8)
    assert float(hardnet_loss(perfect, perfect)) == 0.0  # margin 1 < sqrt(2) to every negative
    torch.manual_seed(0)
    close = torch.nn.functional.normalize(torch.ones(8, 8) + 0.05 * torch.randn(8, 8), dim=1)
    assert 0.7 < float(hardnet_loss(close, close)) <= 1.0  # negatives hardly farther than the positives
    # as in the reference code, rows closer than SAME_PATCH are the same patch, never a negative
    same = torch.nn.functional.normalize(torch.ones(8, 8), dim=1)
    assert float(hardnet_loss(same, same)) == 0.0
    m = pair_metrics(perfect, perfect)
    assert m["fpr95"] == 0.0 and m["top1"] == 1.0
    with pytest.raises(ValueError):
        hardnet_loss(perfect[:1], perfect[:1])


def test_loss_decreases_on_a_tiny_fixed_set():
    import kornia.feature as KF

    pairs = sample_pairs([_regions(0), _regions(1)], 64, WarpConfig(), np.random.default_rng(0))
    assert len(pairs) >= 32
    a = pairs.anchors[:32].float()[:, None] / 255
    p = pairs.positives[:32].float()[:, None] / 255
    torch.manual_seed(0)
    net = KF.HardNet(pretrained=False)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        loss = hardnet_loss(net(a), net(p))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


# -- checkpoints -------------------------------------------------------------------------------
def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    import kornia.feature as KF

    path = tmp_path / "hardnet.pth"
    sha = write_checkpoint(path, KF.HardNet(pretrained=False).state_dict(), {"epoch": 1})
    before = path.read_bytes()

    def killed(fd):
        raise KeyboardInterrupt  # the process dies while the new file is being written

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(path, KF.HardNet(pretrained=False).state_dict(), {"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["hardnet.pth"]
    checkpoint = read_checkpoint(path)
    assert checkpoint.sha256 == sha and checkpoint.meta["epoch"] == 1 and checkpoint.meta["format"] == "reid-engine-hardnet"


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "hardnet.pth"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="train it again or re-copy it"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")


# -- the command -------------------------------------------------------------------------------
TINY = ["--resize", "256", "--max-keypoints", "120", "--pairs", "96", "--batch-size", "32", "--val-pairs", "32",
        "--val-share", "0.34", "--device", "cpu", "--quiet"]


def test_train_one_epoch_then_resume_and_use_the_checkpoint(photo_dir, tmp_path, no_weights):
    out = tmp_path / "hardnet.pth"
    done = run_cli("train", "descriptor", str(photo_dir), "--out", str(out), "--epochs", "1", *TINY, env=no_weights)
    assert done.returncode == 0, done.stderr
    assert "RootSIFT" in done.stdout and "random init" in done.stdout and "epoch 1" in done.stdout
    assert "weight-free" in done.stderr  # no AffNet/OriNet here: said, not hidden
    first = read_checkpoint(out)
    assert first.meta["epoch"] == 1 and len(first.meta["history"]) == 1 and first.optimizer is not None
    assert set(first.meta["baselines"]) == {"rootsift", "untrained"} and len(first.meta["val_photos"]) == 2
    regions = torch.load(out.with_name("hardnet.pth.regions"), weights_only=True)  # kept for --resume
    assert len(regions["lafs"]) == 6

    again = run_cli("train", "descriptor", str(photo_dir), "--out", str(out), "--epochs", "1", *TINY, env=no_weights)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_cli("train", "descriptor", str(photo_dir), "--out", str(out), "--epochs", "2", "--resume", *TINY,
                      env=no_weights)
    assert resumed.returncode == 0, resumed.stderr
    second = read_checkpoint(out)
    assert [row["epoch"] for row in second.meta["history"]] == [1, 2] and second.meta["complete"]
    other = run_cli("train", "descriptor", str(photo_dir), "--out", str(out), "--epochs", "3", "--resume", *TINY,
                    "--seed", "5", env=no_weights)
    assert other.returncode == 2 and "seed" in other.stderr

    # the checkpoint is what hesaffnet-hardnet describes with (no AffNet/OriNet needed upright + circular)
    from reid_engine.registry import PluginTable

    spec = PluginTable.discover().get("extractor", "hesaffnet-hardnet")
    config = spec.make_config({"checkpoint": str(out), "affine": False, "upright": True, "resize": 256})
    assert config.checkpoint_sha256 == second.sha256
    rgb = spots(9)
    f = spec.build(config, "cpu").extract(LoadedImage(ImageRecord("q", "q.png"), rgb, None, "0" * 64, rgb.shape[:2]))
    assert len(f) > 0 and f.desc.shape == (len(f), 128)
    assert np.allclose(np.linalg.norm(f.desc, axis=1), 1, atol=1e-4)


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable", "blank"])
def test_bad_photos_are_usage_errors(case, tmp_path, no_weights):
    folder = tmp_path / "photos"
    if case != "missing":
        folder.mkdir()
    if case == "unreadable":
        for i in range(3):
            (folder / f"x{i}.jpg").write_bytes(b"not a jpeg at all")
    elif case == "blank":
        for i in range(3):
            write_image(folder / f"b{i}.png", np.full((96, 128, 3), 120, np.uint8))
    done = run_cli("train", "descriptor", str(folder), "--out", str(tmp_path / "h.pth"), *TINY, env=no_weights)
    assert done.returncode == 2, done.stderr
    expected = {"missing": "photos: no such file or folder; PHOTOS is", "empty": "no images",
                "unreadable": "could be read", "blank": "too few regions"}[case]
    assert expected in done.stderr.replace("\n", " ")
    assert not (tmp_path / "h.pth").exists()
