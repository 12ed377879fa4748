"""``hesaffnet-hardnet`` and ``keynet-affnet-hardnet``: weights, descriptors, masks, cache identity.

Tests that need AffNet / OriNet / Key.Net / TFeat install them from ../shared/weights with
`reid-engine weights import` into a throw-away TORCH_HOME, and are skipped without that folder.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from reid_engine.components import Built
from reid_engine.records import ImageRecord, LoadedImage
from reid_engine.registry import PluginTable, config_hash
from tests.conftest import SHARED, run_cli, write_image

WEIGHTS = SHARED / "weights"
TABLE = PluginTable.discover()
needs_weights = pytest.mark.skipif(not (WEIGHTS / "AffNet.pth").is_file(), reason=f"no {WEIGHTS}")


def _image(size=(200, 260), mask=None, kind="spots") -> LoadedImage:
    if kind == "blank":
        rgb = np.full((*size, 3), 127, np.uint8)
    else:
        rng = np.random.default_rng(4)
        yy, xx = np.mgrid[: size[0], : size[1]].astype(np.float32)
        img = np.full(size, 0.5, np.float32)
        for _ in range(80):
            cx, cy, s = rng.uniform(0, size[1]), rng.uniform(0, size[0]), rng.uniform(2, 6)
            img += rng.choice([-0.4, 0.4]) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
        rgb = np.repeat((np.clip(img, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    return LoadedImage(ImageRecord("x", "x.png"), rgb, mask, "0" * 64, size)


def _build(name: str, **options):
    spec = TABLE.get("extractor", name)
    config = spec.make_config(options)
    return spec.build(config, "cpu")


@pytest.fixture(scope="module")
def weights_home(tmp_path_factory):
    """A TORCH_HOME with the ../shared weights imported through the CLI (module-wide)."""
    if not (WEIGHTS / "AffNet.pth").is_file():
        pytest.skip(f"no {WEIGHTS}")
    home = tmp_path_factory.mktemp("torch-home")
    files = [str(p) for p in sorted(WEIGHTS.iterdir()) if p.suffix in (".pth", ".params")]
    done = run_cli("weights", "import", *files, env={"TORCH_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = old


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A HardNet checkpoint as `train descriptor` writes it (random weights)."""
    import kornia.feature as KF
    import torch

    from reid_engine.training.checkpoint import write_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "hardnet.pth"
    write_checkpoint(path, KF.HardNet(pretrained=False).state_dict(), {"epoch": 1})
    return path


def test_both_plugins_are_registered():
    names = TABLE.names("extractor")
    assert "hesaffnet-hardnet" in names and "keynet-affnet-hardnet" in names


@needs_weights
@pytest.mark.parametrize("name,descriptor", [("hesaffnet-hardnet", "tfeat"), ("hesaffnet-hardnet", "rootsift"),
                                             ("keynet-affnet-hardnet", "rootsift")])
def test_extractor_contract_with_weights(weights_home, name, descriptor):
    ex = _build(name, descriptor=descriptor, max_keypoints=200, resize=160)
    f = ex.extract(_image())
    n = len(f)
    assert n > 10 and f.desc.shape == (n, 128) and f.lafs.shape == (n, 2, 3) and f.scores.shape == (n,)
    assert f.kpts.dtype == np.float32 and np.isfinite(f.desc).all()
    assert np.allclose(np.linalg.norm(f.desc, axis=1), 1, atol=1e-4)
    # detected on a 160 px copy, reported in the pixels of the 200x260 photo
    assert f.kpts[:, 0].max() > 170 and (f.kpts >= -1).all() and (f.kpts[:, 0] <= 261).all() and (f.kpts[:, 1] <= 201).all()
    assert np.allclose(f.lafs[:, :, 2], f.kpts)
    for image in (_image(kind="blank"), _image(size=(12, 12)), _image(mask=np.zeros((200, 260), bool))):
        empty = ex.extract(image)
        assert len(empty) == 0 and empty.desc.shape == (0, 128)
    mask = np.zeros((200, 260), bool)
    mask[:, :120] = True
    inside = ex.extract(_image(mask=mask))
    assert len(inside) > 0 and (inside.kpts[:, 0] < 124).all()


def test_checkpoint_descriptor_without_any_weight_file(no_weights, checkpoint):
    """Circular, upright regions need no AffNet/OriNet: only the trained checkpoint."""
    ex = _build("hesaffnet-hardnet", checkpoint=str(checkpoint), affine=False, upright=True, max_keypoints=150)
    f = ex.extract(_image())
    assert len(f) > 10 and np.allclose(np.linalg.norm(f.desc, axis=1), 1, atol=1e-4)
    assert len(ex.extract(_image(kind="blank"))) == 0


def test_missing_checkpoint_names_both_ways_to_get_one(no_weights, tmp_path):
    from reid_engine.errors import ReidError

    with pytest.raises(ReidError) as missing_file:
        _build("hesaffnet-hardnet", checkpoint=str(tmp_path / "nope.pth"), affine=False, upright=True)
    with pytest.raises(ReidError) as no_liberty:
        _build("hesaffnet-hardnet", affine=False, upright=True)
    for exc in (missing_file.value, no_liberty.value):
        assert "reid-engine train descriptor" in str(exc) and "reid-engine weights import" in str(exc)
        assert exc.exit_code == 1
    # and through the command line: a profile naming it fails with that one message, exit 1
    profile = tmp_path / "p.toml"
    profile.write_text(f"""
[profile]
name = "t"
[shortlist]
embedder = {{ plugin = "fisher-vector", pca_dim = 8, n_components = 4 }}
[[pipelines]]
name = "hn"
extractor = {{ plugin = "hesaffnet-hardnet", checkpoint = "{tmp_path / 'nope.pth'}", affine = false, upright = true }}
matcher = {{ plugin = "mnn" }}
scorer = {{ plugin = "ransac-inliers" }}
calibration = {{ midpoint = 10.0, width = 3.0 }}
""")
    photos = tmp_path / "g" / "a"
    write_image(photos / "1.png", _image().rgb)
    done = run_cli("enroll", "--gallery", str(tmp_path / "g"), "--db", str(tmp_path / "g.db"), "--profile", str(profile),
                   env={"TORCH_HOME": os.environ["TORCH_HOME"]})
    assert done.returncode == 1 and "reid-engine train descriptor" in done.stderr and "Traceback" not in done.stderr


def test_checkpoint_content_is_part_of_the_cache_id(no_weights, tmp_path):
    import kornia.feature as KF
    import torch

    from reid_engine.inputs.views import load_and_prepare
    from reid_engine.store.database import GalleryDatabase
    from reid_engine.store.features import FeatureCache, ensure_features
    from reid_engine.training.checkpoint import CheckpointError, write_checkpoint

    path = tmp_path / "hardnet.pth"
    spec = TABLE.get("extractor", "hesaffnet-hardnet")
    options = {"checkpoint": str(path), "affine": False, "upright": True, "max_keypoints": 80}

    def built() -> Built:
        config = spec.make_config(options)
        return Built(spec, config, config_hash(config), spec.build(config, "cpu"))

    torch.manual_seed(1)
    write_checkpoint(path, KF.HardNet(pretrained=False).state_dict(), {"epoch": 1})
    first = built()
    record = ImageRecord("a", write_image(tmp_path / "a.png", _image().rgb))
    errors = []
    with GalleryDatabase(tmp_path / "g.db") as db:
        cache = FeatureCache(db)
        load = lambda r: load_and_prepare(r, [], 1600, 32)  # noqa: E731
        keys = ensure_features([(record, None)], [first], cache, load, errors)
        assert cache.get(keys["a"], first) is not None and cache.computed == 1
        ensure_features([(record, None)], [built()], cache, load, errors)
        assert cache.computed == 1  # same file: cached
        # retrained in place: another config hash, so the features are computed again
        torch.manual_seed(2)
        write_checkpoint(path, KF.HardNet(pretrained=False).state_dict(), {"epoch": 2})
        second = built()
        assert second.cache_id != first.cache_id
        ensure_features([(record, None)], [second], cache, load, errors)
        assert cache.computed == 2 and errors == []
        a, b = cache.get(keys["a"], first), cache.get(keys["a"], second)
        assert not np.allclose(a.desc, b.desc)
    # a file that changes between validating the config and building is refused
    config = spec.make_config(options)
    torch.manual_seed(3)
    write_checkpoint(path, KF.HardNet(pretrained=False).state_dict(), {"epoch": 3})
    with pytest.raises(CheckpointError, match="changed"):
        spec.build(config, "cpu")
