"""Part-aware DVE training (seed paper 003): the DVE loss and warps (engine/training/dve.py), the
net's descriptor and orientation heads (engine/embedding/model.py), ``train embedder --method dve``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reid_engine.training.dve import _grid, dve_loss, random_warps, warp
from tests.conftest import copy_manifest


def _positional(points: torch.Tensor) -> torch.Tensor:
    """Descriptors (P, 16) that say where a pixel is: what part-aware descriptors should learn."""
    waves = []
    for k in (1, 2, 4, 8):
        for axis in (0, 1):
            waves += [torch.cos(math.pi * k * points[:, axis]), torch.sin(math.pi * k * points[:, axis])]
    return torch.nn.functional.normalize(torch.stack(waves, 1), dim=1)


def _as_map(desc: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return desc.T.reshape(1, -1, h, w).contiguous()


def test_dve_loss_is_zero_for_exact_descriptors_and_low_for_positional_ones():
    h = w = 12
    one_hot = _as_map(torch.eye(h * w), h, w)
    identity = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    assert float(dve_loss(one_hot, one_hot, one_hot, identity)) < 0.01
    theta = random_warps(1, np.random.default_rng(0))
    positional = _as_map(_positional(_grid(h, w, "cpu")), h, w)
    warped = torch.nn.functional.normalize(warp(positional, theta), dim=1)  # what the net sees of x' = g x
    rng = torch.Generator().manual_seed(0)
    noise = [torch.nn.functional.normalize(torch.randn(1, 16, h, w, generator=rng), dim=1) for _ in range(2)]
    good = float(dve_loss(positional, warped, positional, theta))
    bad = float(dve_loss(noise[0], noise[1], positional, theta))
    assert good < 0.5 * bad


def test_random_warps_are_similarities_within_their_ranges():
    theta = random_warps(50, np.random.default_rng(1), rotate_deg=20, scale=(0.9, 1.1), shift=0.05)
    a = theta[:, :, :2]
    assert torch.allclose(a[:, 0, 0], a[:, 1, 1]) and torch.allclose(a[:, 0, 1], -a[:, 1, 0])
    s = 1 / torch.sqrt(torch.linalg.det(a))
    assert (s > 0.9 - 1e-5).all() and (s < 1.1 + 1e-5).all() and (theta[:, :, 2].abs() <= 0.05).all()


def test_a_dve_net_has_its_heads_and_embeds_like_any_other():
    from reid_engine.embedding.model import EmbedderSpec, ReidNet

    net = ReidNet(EmbedderSpec(image_size=64, method="dve", dve_dim=8, orientations=("left", "right"))).eval()
    x = torch.randn(2, 3, 64, 64)
    z, parts = net.embedding_and_parts(x)
    assert z.shape == (2, 512) and parts.shape == (2, 8, 8, 8)
    assert torch.allclose(parts.norm(dim=1), torch.ones(2, 8, 8), atol=1e-5)
    assert net.orientation(z).shape == (2, 2)
    assert torch.allclose(net(x), torch.nn.functional.normalize(z, dim=1), atol=1e-6)


@pytest.fixture(scope="module")
def two_sided(tmp_path_factory, seal_data):
    """The synthetic gallery with half the photos labelled as right flanks (an orientation to learn)."""
    flip = iter(range(10**6))
    return copy_manifest(seal_data.gallery_csv, tmp_path_factory.mktemp("dve") / "gallery.csv",
                         edit=lambda row: row.update(orientation="right" if next(flip) % 2 else "left"))


def test_train_dve_learns_an_orientation_head_and_exports(two_sided, fast_profile, tmp_path):
    from reid_engine.embedding.model import read_model_file
    from reid_engine.embedding.onnx_export import export_onnx
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.training.train_embedder import TrainEmbedderOptions, train_embedder

    options = TrainEmbedderOptions(profile=load_profile_file(fast_profile), db=tmp_path / "g.db", gallery=two_sided,
                                   method="dve", epochs=1, image_size=64, val_share=0.0, batch_p=2, batch_k=2,
                                   out=tmp_path / "m.pt")
    result = train_embedder(options)
    assert len(result.history) == 1 and np.isfinite(result.history[0]["loss"])
    net, meta, _ = read_model_file(tmp_path / "m.pt")
    assert net.spec.method == "dve" and net.spec.dve_dim == 64 and net.spec.orientations == ("left", "right")
    import onnxruntime as ort

    session = ort.InferenceSession(export_onnx(net), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert np.allclose(session.run(None, {"image": x.numpy()})[0], net(x).numpy(), atol=1e-4)
