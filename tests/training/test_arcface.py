"""Sub-center ArcFace with dynamic margins, and P×K batches (engine/training/arcface.py)."""

from __future__ import annotations

import numpy as np
import torch

from reid_engine.training.arcface import SubCenterArcFace, dynamic_margins, pk_batches


def test_dynamic_margins_are_larger_for_rare_identities():
    m = dynamic_margins([1, 2, 8, 40], m_min=0.2, m_max=0.5)
    assert m.dtype == np.float32 and m.shape == (4,)
    assert np.all(np.diff(m) < 0)  # more photos, smaller margin
    assert abs(m[0] - 0.5) < 1e-6 and abs(m[-1] - 0.2) < 1e-6
    assert np.allclose(dynamic_margins([5, 5, 5]), 0.35)  # all alike: the middle


def test_subcenter_arcface_learns_separable_classes():
    torch.manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    labels = torch.arange(4).repeat_interleave(6)
    emb = torch.nn.functional.normalize(centres[labels] + 0.1 * torch.randn(24, 8), dim=1)
    head = SubCenterArcFace(8, dynamic_margins([6, 6, 6, 6]), k=3)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    first = float(head(emb, labels).detach())
    for _ in range(60):
        loss = head(emb, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert np.isfinite(first) and float(loss.detach()) < 0.5 * first
    assert (head.cosines(emb).argmax(1) == labels).all()


def test_margin_lowers_the_target_logit():
    head = SubCenterArcFace(2, np.array([0.5, 0.5], np.float32), k=1, scale=1.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb = torch.tensor([[1.0, 0.0]])
    no_margin = torch.nn.functional.cross_entropy(head.cosines(emb), torch.tensor([0]))
    assert float(head(emb, torch.tensor([0])).detach()) > float(no_margin.detach())


def test_pk_batches_are_identity_balanced_and_cover_every_photo():
    labels = [0] * 7 + [1] * 2 + [2] * 4 + [3] * 5 + [4] * 3
    batches = list(pk_batches(labels, p=2, k=4, rng=np.random.default_rng(0)))
    assert all(len(b) % 4 == 0 and len(b) <= 8 for b in batches)
    for b in batches:  # each K-chunk is one identity
        for start in range(0, len(b), 4):
            assert len({labels[i] for i in b[start:start + 4]}) == 1
    seen = {i for b in batches for i in b}
    assert len(seen) >= len(labels) - 4  # at most one dropped trailing chunk
    again = list(pk_batches(labels, p=2, k=4, rng=np.random.default_rng(0)))
    assert [list(map(int, b)) for b in again] == [list(map(int, b)) for b in batches]
