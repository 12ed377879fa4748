"""``mnn``: mutual nearest neighbours of descriptors, with an optional second-nearest ratio test.

``ratio < 1`` keeps mutual matches whose nearest/second-nearest distance ratio is below it
in both directions (the matches of kornia's ``match_smnn``); ``ratio = 1`` keeps all mutual
nearest neighbours (``match_mnn``). Confidence is ``1 - ratio`` with the ratio test, else the
cosine similarity of the pair.

The ratio test is computed here rather than by ``match_smnn``, with the same result: kornia
runs ``topk`` twice over a ``cdist`` matrix, once along its non-contiguous transpose, and that
was two thirds of a warm nyala query (pyinstrument: 54.6 of 82.2 s, 39.7 s in ``topk``). Here
one matrix product, turned into squared distances in place (no other (N1, N2) array is
allocated), gives the two smallest per row and per column; on the CPU through numpy's SIMD
``argmin`` / ``min`` (torch's index-returning ``min`` is several times slower), elsewhere through
torch's ``min`` / ``amin`` with the first minimum masked in place (``benchmarks/mnn_speed.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reid_engine.plugin import LocalFeatures, Matcher, Matches, PluginSpec, hookimpl

from ._torch import descriptors, to_matches


@dataclass(frozen=True)
class MnnConfig:
    """ratio: second-nearest ratio threshold in (0, 1]; 1 switches the ratio test off."""

    ratio: float = 0.9


@dataclass(frozen=True)
class SmnnConfig(MnnConfig):
    """``smnn``: the symmetric ratio test in both directions, 0.95 by default (kornia's choice)."""

    ratio: float = 0.95


class MutualNearestNeighbour(Matcher):
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: MnnConfig, device: str) -> None:
        if not 0.0 < config.ratio <= 1.0:
            name = "smnn" if isinstance(config, SmnnConfig) else "mnn"
            raise ValueError(f"{name}.ratio must lie in (0, 1], got {config.ratio}")
        self.config = config
        self.device = device

    @torch.inference_mode()
    def match(self, f1: LocalFeatures, f2: LocalFeatures) -> Matches:
        import kornia.feature as KF

        if len(f1) < 2 or len(f2) < 2:
            return Matches.empty()
        d1, d2 = descriptors(f1, self.device), descriptors(f2, self.device)
        if self.config.ratio < 1.0:
            dists, idxs = ratio_mutual_nn(d1, d2, self.config.ratio)
            conf = 1.0 - dists
        else:
            dists, idxs = KF.match_mnn(d1, d2)
            conf = (1.0 - dists.reshape(-1) ** 2 / 2.0).clamp(0, 1)
        return to_matches(idxs, conf)


def _two_smallest(dist: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smallest value, its index and the second-smallest value of ``dist`` along ``dim``;
    ``dist`` is changed in place and restored."""
    first, index = dist.min(dim)
    others = torch.arange(dist.shape[1 - dim], device=dist.device)
    at = (others, index) if dim == 1 else (index, others)
    dist[at] = float("inf")
    second = dist.amin(dim)
    dist[at] = first
    return first, index, second


def ratio_mutual_nn(d1: torch.Tensor, d2: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual nearest neighbours of descriptors d1 (N1, D), d2 (N2, D) (Euclidean) that pass the
    nearest/second-nearest distance ratio test ``<= ratio`` (< 1) in both directions.

    Returns (ratios float (M,): the larger of the two ratios, idx int64 (M, 2), rows of d1 in
    ascending order): the matches and ``dists`` of ``kornia.feature.match_smnn(d1, d2, ratio)``.
    """
    n1, n2 = len(d1), len(d2)
    if n1 < 2 or n2 < 2:
        return torch.zeros(0, device=d1.device), torch.zeros((0, 2), dtype=torch.long, device=d1.device)
    if d1.device.type == "cpu" and d1.dtype == torch.float32 and ratio < 1.0:
        ratios, rows, cols = _ratio_mutual_nn_numpy(squared_distances(d1, d2, padded=False).numpy(), ratio)
        return torch.from_numpy(ratios), torch.from_numpy(np.stack([rows, cols], 1))
    return _ratio_mutual_nn_torch(squared_distances(d1, d2, padded=True), ratio)


def squared_distances(d1: torch.Tensor, d2: torch.Tensor, padded: bool) -> torch.Tensor:
    """float (N1, N2): squared Euclidean distances from one matrix product, made in place.

    ``padded``: rows 16 floats apart beyond N2, for torch's reductions along columns, which thrash
    the cache at a power-of-two row stride (min over dim 0: 2.7 ms instead of 0.4 ms at 1,024²);
    numpy's are fastest on a contiguous array."""
    n1, n2 = len(d1), len(d2)
    sq = torch.empty((n1, n2 + (16 if padded else 0)), dtype=d1.dtype, device=d1.device)[:, :n2]
    torch.mm(d1, d2.T, out=sq)
    return sq.mul_(-2.0).add_((d1 * d1).sum(1)[:, None]).add_((d2 * d2).sum(1)[None, :]).clamp_(min=0)


def _ratio_mutual_nn_torch(sq: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``ratio_mutual_nn`` from squared distances (N1, N2) with torch's reductions (any device)."""
    best12, to2, second12 = _two_smallest(sq, 1)  # (N1,) nearest in d2
    best21, to1, second21 = _two_smallest(sq, 0)  # (N2,) nearest in d1
    ratio12 = best12.sqrt() / second12.sqrt()
    ratio21 = best21.sqrt() / second21.sqrt()
    rows = torch.arange(sq.shape[0], device=sq.device)
    keep = (to1[to2] == rows) & (ratio12 <= ratio) & (ratio21[to2] <= ratio)
    return torch.maximum(ratio12[keep], ratio21[to2[keep]]), torch.stack([rows[keep], to2[keep]], 1)


def _ratio_mutual_nn_numpy(sq: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ratio_mutual_nn`` on the CPU for ``ratio`` < 1, from squared distances float32 (N1, N2)
    (changed and restored): (ratios (M,), rows (M,) ascending, cols (M,)).

    numpy's ``argmin`` / ``min`` are SIMD loops, several times as fast as torch's index-returning
    ``min``; the column side needs no index: row i's nearest column j is mutual when no row is
    closer to j (the column's minimum), and masking those rows gives the columns' second nearest.
    Ties are rejected as by the torch path: an equal second nearest makes the ratio 1. (At ratio 1
    itself which of tied rows is kept is the torch path's choice, so that path takes it.)
    """
    n1 = sq.shape[0]
    rows = np.arange(n1)
    to2 = sq.argmin(1)  # (N1,) nearest column of each row
    best12 = sq[rows, to2]
    sq[rows, to2] = np.inf
    second12 = sq.min(1)
    sq[rows, to2] = best12
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 at a duplicated descriptor: NaN fails the test
        ratio12 = np.sqrt(best12) / np.sqrt(second12)
    cand = np.flatnonzero((best12 <= sq.min(0)[to2]) & (ratio12 <= ratio))  # mutual, row test passed
    cols = to2[cand]
    sq[cand, cols] = np.inf  # each candidate column's nearest row, masked: its minimum is now the second
    second21 = sq.min(0)[cols]
    sq[cand, cols] = best12[cand]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio21 = np.sqrt(best12[cand]) / np.sqrt(second21)
    # rows equally near one column: its second nearest is as near (ratio 1, which fails any ratio < 1)
    ratio21[np.bincount(cols, minlength=sq.shape[1])[cols] > 1] = np.inf
    keep = ratio21 <= ratio
    return np.maximum(ratio12[cand], ratio21)[keep], cand[keep], cols[keep]


@hookimpl
def register_matchers(register):
    register(PluginSpec(
        name="mnn", kind="matcher", version="1", config_cls=MnnConfig,
        build=lambda config, device: MutualNearestNeighbour(config, device),
        description="mutual nearest neighbours (+ optional ratio test), kornia",
    ))
    register(PluginSpec(
        name="smnn", kind="matcher", version="1", config_cls=SmnnConfig,
        build=lambda config, device: MutualNearestNeighbour(config, device),
        description="symmetric ratio-tested mutual nearest neighbours (kornia match_smnn)",
    ))
