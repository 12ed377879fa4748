"""``mnn`` / ``smnn`` (plugins/matchers/nearest_neighbour.py): kornia's ``match_smnn`` /
``match_mnn`` matches, with the confidences the scorers read (1 - ratio, or the cosine)."""

from __future__ import annotations

import kornia.feature as KF
import numpy as np
import pytest
import torch

from reid_engine.records import LocalFeatures
from reid_engine.registry import PluginTable


def _descriptor_pair(seed: int, n1: int = 700, n2: int = 650, shared: int = 200, unit: bool = True):
    """Two descriptor sets (n1, 128), (n2, 128) sharing ``shared`` noisy copies; L2-unit like RootSIFT/ALIKED or not."""
    g = torch.Generator().manual_seed(seed)
    d1 = torch.rand(n1, 128, generator=g) ** 2
    d2 = torch.cat([d1[:shared] + 0.02 * torch.randn(shared, 128, generator=g), torch.rand(n2 - shared, 128, generator=g) ** 2])
    d2 = d2[torch.randperm(n2, generator=g)]
    if unit:
        d1, d2 = torch.nn.functional.normalize(d1, dim=1), torch.nn.functional.normalize(d2, dim=1)
    else:
        d1, d2 = 3.0 * d1, 3.0 * d2
    return d1, d2


@pytest.mark.parametrize("unit", [True, False])
@pytest.mark.parametrize("name, options", [("mnn", {"ratio": 0.8}), ("mnn", {"ratio": 1.0}), ("smnn", {})])
def test_matcher_plugins_give_kornias_matches_and_confidences(name, options, unit):
    spec = PluginTable.discover().get("matcher", name)
    matcher = spec.build(spec.make_config(options), "cpu")
    d1, d2 = _descriptor_pair(4, unit=unit)
    f1, f2 = (LocalFeatures(kpts=np.zeros((len(d), 2), np.float32), desc=d.numpy(), scores=np.ones(len(d), np.float32),
                            image_hw=(100, 100)) for d in (d1, d2))
    m = matcher.match(f1, f2)
    ratio = matcher.config.ratio
    if ratio < 1.0:
        dists, idx = KF.match_smnn(d1, d2, ratio)
        conf = 1.0 - dists.reshape(-1)
    else:
        dists, idx = KF.match_mnn(d1, d2)
        conf = (1.0 - dists.reshape(-1) ** 2 / 2.0).clamp(0, 1)
    assert np.array_equal(m.idx, idx.numpy()) and np.allclose(m.conf, conf.numpy(), atol=1e-5)
    one = LocalFeatures(kpts=np.zeros((1, 2), np.float32), desc=d1[:1].numpy(), scores=np.ones(1, np.float32),
                        image_hw=(100, 100))
    assert len(matcher.match(one, f2)) == 0


@pytest.mark.parametrize("seed", range(4))
def test_ratio_mutual_nn_is_kornias_match_smnn(seed):
    from reid_engine.plugins.matchers.nearest_neighbour import (
        _ratio_mutual_nn_torch,
        ratio_mutual_nn,
        squared_distances,
    )

    d1, d2 = _descriptor_pair(seed, n1=300 + 50 * seed, n2=280, shared=120, unit=seed % 2 == 0)
    for ratio in (0.7, 0.8, 0.95, 1.0):
        dists, idx = KF.match_smnn(d1, d2, ratio)
        ours, our_idx = ratio_mutual_nn(d1, d2, ratio)  # numpy's reductions (CPU)
        assert torch.equal(our_idx, idx) and torch.allclose(ours, dists.reshape(-1), atol=1e-5)
        ours, our_idx = _ratio_mutual_nn_torch(squared_distances(d1, d2, padded=True), ratio)  # a GPU's path
        assert torch.equal(our_idx, idx) and torch.allclose(ours, dists.reshape(-1), atol=1e-5)
        assert len(idx) > 20  # the shared descriptors match
    assert ratio_mutual_nn(d1[:1], d2, 0.8)[1].shape == (0, 2)
    same = torch.cat([d2[:1], d2[:1], d2[1:]])  # a duplicated descriptor: ratio 0/0 fails the test as in kornia
    assert torch.equal(ratio_mutual_nn(d2[:3], same, 0.9)[1], KF.match_smnn(d2[:3], same, 0.9)[1])
    twice = torch.cat([d1[:1], d1])  # two rows equally near every column: their ratio is 1
    for ratio in (0.9, 1.0):
        dists, idx = KF.match_smnn(twice, d2, ratio)
        ours, our_idx = ratio_mutual_nn(twice, d2, ratio)
        assert torch.equal(our_idx, idx) and torch.allclose(ours, dists.reshape(-1), atol=1e-5)


def test_numpy_and_torch_ratio_tests_agree_on_ties_and_zeros():
    """Small integer distance matrices: many rows and columns tied, zero distances (0/0)."""
    from reid_engine.plugins.matchers.nearest_neighbour import _ratio_mutual_nn_numpy, _ratio_mutual_nn_torch

    rng = np.random.default_rng(0)
    agreed_on_some = 0
    for _ in range(300):
        sq = rng.integers(0, 4, size=tuple(rng.integers(2, 6, size=2))).astype(np.float32)
        for ratio in (0.5, 0.8, 0.99):
            before = sq.copy()
            ratios, rows, cols = _ratio_mutual_nn_numpy(sq, ratio)
            assert np.array_equal(sq, before)  # restored
            theirs, idx = _ratio_mutual_nn_torch(torch.from_numpy(sq.copy()), ratio)
            assert np.array_equal(np.stack([rows, cols], 1).reshape(-1, 2), idx.numpy())
            assert np.allclose(ratios, theirs.numpy())
            agreed_on_some += len(rows) > 0
    assert agreed_on_some > 50  # not only empty answers
