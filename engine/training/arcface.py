"""Sub-center ArcFace with dynamic margins (MiewID's recipe), and P×K identity-balanced batches.

Sub-center ArcFace (Deng et al. 2020): each identity has ``k`` centres; a sample's cosine to
its class is the max over them, so a noisy or odd view falls to a sub-centre instead of
pulling the main one. Dynamic margins (Ha et al., Google Landmarks 2020; MiewID): rare
identities get larger margins, ``m_c = m_min + (m_max − m_min) · norm(n_c^(−1/4))``.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn


def dynamic_margins(counts: Sequence[int], m_min: float = 0.2, m_max: float = 0.5, power: float = -0.25) -> np.ndarray:
    """Margin per class, float32 (C,): in [m_min, m_max], larger for classes with fewer images."""
    x = np.asarray(counts, np.float64) ** power
    span = x.max() - x.min() if len(x) else 0.0
    unit = (x - x.min()) / span if span > 0 else np.full(len(x), 0.5)
    return (m_min + (m_max - m_min) * unit).astype(np.float32)


class SubCenterArcFace(nn.Module):
    """Logits for cross-entropy: ``forward(emb (N, D) unit rows, labels int64 (N,)) → loss``."""

    def __init__(self, dim: int, margins: np.ndarray, k: int = 3, scale: float = 30.0) -> None:
        super().__init__()
        self.n_classes, self.k, self.scale = len(margins), k, scale
        self.weight = nn.Parameter(torch.empty(self.n_classes * k, dim))
        nn.init.xavier_uniform_(self.weight)
        self.register_buffer("margins", torch.as_tensor(margins, dtype=torch.float32))

    def cosines(self, emb: torch.Tensor) -> torch.Tensor:
        """Cosine to each class (max over its sub-centres), (N, C)."""
        w = nn.functional.normalize(self.weight, dim=1)
        return (emb @ w.T).view(-1, self.n_classes, self.k).amax(dim=2)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosines(emb).clamp(-1 + 1e-7, 1 - 1e-7)
        m = self.margins[labels]
        cos_y = cos.gather(1, labels[:, None]).squeeze(1)
        theta = torch.acos(cos_y)
        # past pi - m, cos(theta + m) stops decreasing; use the usual linear continuation
        target = torch.where(theta + m < math.pi, torch.cos(theta + m), cos_y - m * torch.sin(m))
        logits = cos.scatter(1, labels[:, None], target[:, None]) * self.scale
        return nn.functional.cross_entropy(logits, labels)


def pk_batches(labels: Sequence[int], p: int, k: int, rng: np.random.Generator) -> Iterator[list[int]]:
    """One epoch of P identities × K images per batch (indices into ``labels``).

    Every image is drawn about once per epoch; an identity with fewer than K images repeats
    some (each draw gets its own augmentation). Identities are visited in a random order.
    """
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(int(c), []).append(i)
    chunks: list[list[int]] = []
    for members in by_class.values():
        order = list(rng.permutation(members))
        for start in range(0, len(order), k):
            chunk = order[start:start + k]
            if len(chunk) < k:
                chunk += list(rng.choice(members, k - len(chunk)))
            chunks.append(chunk)
    order = rng.permutation(len(chunks))
    batch: list[int] = []
    for n, c in enumerate(order, start=1):
        batch.extend(chunks[c])
        if n % p == 0:
            yield batch
            batch = []
    if len(batch) >= 2 * k:
        yield batch
