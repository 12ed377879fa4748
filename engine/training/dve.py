"""``train embedder --method dve``: part-aware re-ID with Descriptor Vector Exchange (seed paper 003).

Besides the re-ID loss (sub-center ArcFace) the net learns dense descriptors Φ on its stride-8
features with the DVE objective (Thewlis et al. 2019, as used by the paper): a photo ``x``, a
random warp of it ``x' = g x`` and an auxiliary photo ``x_a`` (another animal of the batch).
Each descriptor of ``x`` is exchanged for its soft match in ``x_a`` (so it has to describe the
*body part*, shared across individuals, not the individual), that vector is matched softly
against ``x'``, and the loss is the expected distance between the match and where ``g``
really moved the pixel:

    L_DVE = mean_u  sum_v  ||v - g(u)|| p(v | u; Φ, x, x', x_a)

An orientation head (cross-entropy on the manifest's ``orientation``, e.g. left/right flank)
joins where the photos have one. The paper's weights: λ_DVE = 0.2, d = 64; its λ_reID = 2
scales a circle loss we do not use (ArcFace carries the weight of the re-ID term here).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

LAMBDA_DVE = 0.2
TEMPERATURE = 0.05  # of the softmaxes over descriptor cosines


def random_warps(n: int, rng: np.random.Generator, rotate_deg: float = 25.0, scale: tuple[float, float] = (0.8, 1.2),
                 shift: float = 0.1) -> torch.Tensor:
    """Random similarity warps as ``affine_grid`` matrices float32 (n, 2, 3): output (warped) →
    input coordinates, both in [-1, 1]."""
    theta = np.zeros((n, 2, 3), np.float32)
    for i in range(n):
        a = math.radians(rng.uniform(-rotate_deg, rotate_deg))
        s = rng.uniform(*scale)
        c, si = math.cos(a) / s, math.sin(a) / s
        theta[i] = [[c, -si, rng.uniform(-shift, shift)], [si, c, rng.uniform(-shift, shift)]]
    return torch.as_tensor(theta)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Images (N, C, S, S) → the same images seen through ``theta`` (N, 2, 3)."""
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _grid(h: int, w: int, device) -> torch.Tensor:
    """Cell centres (h*w, 2) as x, y in [-1, 1] (align_corners=False convention)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


def dve_loss(parts: torch.Tensor, warped: torch.Tensor, auxiliary: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The DVE loss of descriptors (N, D, h, w) of the photos, of their warps by ``theta`` (N, 2, 3)
    and of auxiliary photos (all L2-normalised along D), in units of feature cells."""
    n, d, h, w = parts.shape
    grid = _grid(h, w, parts.device)  # (P, 2)
    # where each pixel u of x lands in x': theta maps x' coordinates to x, so v = theta^-1 u
    a, t = theta[:, :, :2], theta[:, :, 2]
    target = torch.linalg.solve(a, (grid[None] - t[:, None, :]).transpose(1, 2)).transpose(1, 2)  # (N, P, 2)
    inside = (target.abs() <= 1).all(-1)  # (N, P): pixels still in the warped photo
    scale = torch.tensor([w / 2, h / 2], device=parts.device)
    distance = torch.cdist(target * scale, (grid * scale)[None].expand(n, -1, -1))  # (N, P, P) cells
    src = parts.flatten(2).transpose(1, 2)  # (N, P, D)
    aux = auxiliary.flatten(2).transpose(1, 2)
    dst = warped.flatten(2).transpose(1, 2)
    exchanged = torch.softmax(src @ aux.transpose(1, 2) / TEMPERATURE, -1) @ aux  # (N, P, D)
    match = torch.softmax(exchanged @ dst.transpose(1, 2) / TEMPERATURE, -1)  # p(v | u), (N, P, P)
    expected = (match * distance).sum(-1)  # (N, P)
    return (expected * inside).sum() / inside.sum().clamp(min=1)


def dve_step_loss(net, head: nn.Module, x: torch.Tensor, labels: torch.Tensor, orientation: torch.Tensor,
                  rng: np.random.Generator) -> torch.Tensor:
    """Re-ID + ``LAMBDA_DVE`` × DVE + orientation loss of one batch: x (B, 3, S, S) normalised,
    labels (B,), orientation (B,) class index or -1 where unknown."""
    z, parts = net.embedding_and_parts(x)
    loss = head(nn.functional.normalize(z, dim=1), labels)
    theta = random_warps(len(x), rng).to(x.device)
    _, warped_parts = net.embedding_and_parts(warp(x, theta))
    auxiliary = parts.roll(len(x) // 2, 0)  # another photo of the batch (P×K batches: another individual)
    loss = loss + LAMBDA_DVE * dve_loss(parts, warped_parts, auxiliary, theta)
    known = orientation >= 0
    if hasattr(net, "orientation") and bool(known.any()):
        loss = loss + nn.functional.cross_entropy(net.orientation(z[known]), orientation[known])
    return loss
