"""``train embedder --method landmark-id``: the batch and the loss of Landmark-Id (seed paper 002).

The net sees each photo with one heatmap channel per landmark (:mod:`reid_engine.embedding.heatmaps`)
and is trained on three terms:

- the re-ID loss (sub-center ArcFace) of the embedding;
- heatmap reconstruction (binary cross-entropy, weight ``alpha`` = the paper's 1): the heatmaps
  it was given, decoded back from the embedding, so the embedding has to carry them;
- the landmark locator (binary cross-entropy on the annotated photos): the photo's heatmaps
  predicted from the photo alone, which stand in for keypoints at run time.

Input heatmaps of an annotated photo go through noisy- and missing-landmark augmentation
(NLA, MLA); a share of them (``predicted_share``), and every photo without keypoints, get the
locator's prediction instead, so the embedding also learns from what a query without keypoints
will give it. Departures from the paper, both for a CPU budget: one training stage, with the
extra input channels starting at zero rather than random (the ImageNet start sees the photo as
before), and a locator that shares the backbone instead of a separate landmark model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from reid_engine.embedding.heatmaps import missing_landmarks, noisy_landmarks, render_heatmaps
from reid_engine.embedding.model import ReidNet
from reid_engine.embedding.views import to_input

RECONSTRUCTION_SIDE = 64
PREDICTED_SHARE = 0.25  # annotated training photos fed the locator's heatmaps instead of their own
ALPHA = 1.0  # heatmap reconstruction loss weight (paper: 0.1, 1 and 10 made no difference)
LOCATOR_WEIGHT = 1.0


@dataclass
class LandmarkBatch:
    """One augmented batch: ``x`` float32 (B, 3, S, S) normalised; ``noisy`` and ``clean`` float32
    (B, K, S, S) heatmaps with and without NLA/MLA; ``annotated`` bool (B,)."""

    x: torch.Tensor
    noisy: torch.Tensor
    clean: torch.Tensor
    annotated: torch.Tensor


def landmark_batch(squares: np.ndarray, points: np.ndarray, annotated: np.ndarray, geometric: Callable,
                   photometric: Callable, spec, rng: np.random.Generator) -> LandmarkBatch:
    """Squares uint8 (B, S', S', 3) and their landmarks float32 (B, K, 2) in px of S' → a batch at
    the net's size; the same random crop moves the photo and its heatmaps."""
    side = squares.shape[1]
    k = points.shape[1]
    xs, noisy, clean = [], [], []
    for square, pts, ann in zip(squares, points, annotated):
        exact = render_heatmaps(pts, side, spec.heatmap_radius)
        shaken = render_heatmaps(missing_landmarks(noisy_landmarks(pts, side, rng, spec.heatmap_radius), rng), side,
                                 spec.heatmap_radius) if ann else exact
        stack = torch.cat([torch.as_tensor(square).permute(2, 0, 1).float().div(255.0),
                           torch.as_tensor(exact), torch.as_tensor(shaken)])
        view = geometric(stack)
        xs.append(photometric(view[:3]))
        clean.append(view[3:3 + k])
        noisy.append(view[3 + k:])
    x = to_input(torch.stack(xs).clamp(0, 1).mul(255.0), spec.mean, spec.std)
    return LandmarkBatch(x, torch.stack(noisy).clamp(0, 1), torch.stack(clean).clamp(0, 1),
                         torch.as_tensor(np.asarray(annotated, bool)))


def landmark_loss(net: ReidNet, head: nn.Module, batch: LandmarkBatch, labels: torch.Tensor,
                  rng: np.random.Generator, device: str) -> torch.Tensor:
    """Re-ID + ``ALPHA`` × heatmap reconstruction + ``LOCATOR_WEIGHT`` × locator loss of one batch."""
    x, noisy, clean = batch.x.to(device), batch.noisy.to(device), batch.clean.to(device)
    annotated = batch.annotated.to(device)
    located = net.locate(x)  # (B, K, S/8, S/8)
    predicted = torch.sigmoid(nn.functional.interpolate(located, size=x.shape[2:], mode="bilinear",
                                                        align_corners=False)).detach()
    swap = torch.as_tensor(rng.uniform(size=len(x)) < PREDICTED_SHARE, device=device) | ~annotated
    fed = torch.where(swap.view(-1, 1, 1, 1), predicted, noisy)
    z = net.embedding(torch.cat([x, fed], 1))
    loss = head(nn.functional.normalize(z, dim=1), labels)
    target = nn.functional.interpolate(fed, size=(RECONSTRUCTION_SIDE, RECONSTRUCTION_SIDE), mode="area")
    loss = loss + ALPHA * nn.functional.binary_cross_entropy_with_logits(net.reconstruct(z), target)
    if bool(annotated.any()):
        where = nn.functional.interpolate(clean, size=located.shape[2:], mode="area")
        loss = loss + LOCATOR_WEIGHT * nn.functional.binary_cross_entropy_with_logits(located[annotated],
                                                                                      where[annotated])
    return loss


def given_heatmaps(points: np.ndarray, from_side: int, size: int, radius: float) -> torch.Tensor:
    """Landmarks float32 (N, K, 2) in px of ``from_side`` squares → heatmaps float32 (N, K, size, size)."""
    scale = size / from_side
    return torch.as_tensor(np.stack([render_heatmaps((p + 0.5) * scale - 0.5, size, radius) for p in points])
                           if len(points) else np.zeros((0, points.shape[1], size, size), np.float32))
