"""HardNet's hardest-in-batch triplet margin loss, and the patch-matching measures reported.

Mishchuk et al. 2017, "Working hard to know your neighbor's margins": for a batch of matching
pairs (a_i, p_i), each with unit descriptors, the loss is

    L = mean_i max(0, margin + d(a_i, p_i) - min(min_j≠i d(a_i, p_j), min_j≠i d(a_j, p_i)))

(the second term of the min is the "anchor swap"), d the Euclidean distance.
"""

from __future__ import annotations

import torch

# pairs closer than this are treated as the same patch, not a negative (as the reference code)
SAME_PATCH = 0.008


def distance_matrix(a: torch.Tensor, p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Euclidean distances (N, M) between unit rows a (N, D) and p (M, D)."""
    return torch.sqrt((2.0 - 2.0 * (a @ p.t())).clamp_min(0.0) + eps)


def hardnet_loss(anchors: torch.Tensor, positives: torch.Tensor, margin: float = 1.0,
                 anchor_swap: bool = True) -> torch.Tensor:
    """Hardest-in-batch triplet margin loss of descriptors (B, D) → scalar.

    Row i of ``anchors`` matches row i of ``positives``; every other row is a negative.
    """
    if anchors.shape != positives.shape or anchors.ndim != 2 or anchors.shape[0] < 2:
        raise ValueError(f"hardnet_loss needs two (B, D) batches with B ≥ 2, got {tuple(anchors.shape)} "
                         f"and {tuple(positives.shape)}")
    dist = distance_matrix(anchors, positives)
    pos = torch.diagonal(dist)
    eye = torch.eye(dist.shape[0], dtype=torch.bool, device=dist.device)
    blocked = eye | (dist < SAME_PATCH)
    neg = dist.masked_fill(blocked, 10.0)
    hardest = neg.min(dim=1).values
    if anchor_swap:
        hardest = torch.minimum(hardest, neg.min(dim=0).values)
    return torch.clamp(margin + pos - hardest, min=0.0).mean()


@torch.no_grad()
def pair_metrics(anchors: torch.Tensor, positives: torch.Tensor) -> dict[str, float]:
    """Patch matching quality of descriptors (N, D) where row i of each is the same region.

    fpr95  share of non-matching pairs (every (a_i, p_j), j ≠ i) closer than the distance at
           which 95 % of the matching pairs are accepted (lower is better; Brown et al.)
    top1   share of anchors whose nearest positive is their own (higher is better)
    """
    n = anchors.shape[0]
    if n < 2:
        return {"fpr95": float("nan"), "top1": float("nan"), "pairs": float(n)}
    dist = distance_matrix(anchors.float(), positives.float())
    pos = torch.diagonal(dist)
    threshold = torch.quantile(pos, 0.95)
    off = ~torch.eye(n, dtype=torch.bool, device=dist.device)
    fpr95 = (dist[off] <= threshold).float().mean()
    top1 = (dist.argmin(dim=1) == torch.arange(n, device=dist.device)).float().mean()
    return {"fpr95": float(fpr95), "top1": float(top1), "pairs": float(n)}
