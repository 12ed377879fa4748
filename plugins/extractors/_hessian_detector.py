"""The Hessian blob detector of ``hessaff-rootsift``: kornia's ``ScaleSpaceDetector`` with ``BlobHessian``,
``ConvQuadInterp3d`` and ``minima_are_also_good``, for one image, computed where the maxima are.

kornia finds the scale-space extrema of each octave with 52 full-volume comparisons and refines them
through full-volume tables: four (2, 1, L, h, w) copies an octave, the solve of every voxel near an
extremum, a look-up table the size of the volume. Here the extrema come from a separable 3 × 3 × 3 box
maximum (six ``maximum`` passes; ties are checked afterwards at the few voxels that equal their box's
maximum and exceed both x neighbours, so a flat background does not make every voxel a candidate)
and each extremum is refined on its own 3 × 3 × 3 neighbourhood, gathered where it stands, the same
iterations as kornia's. Everything else is kornia's: its ``ScalePyramid``, the mask min-pooled onto each
octave, the top-K of each octave then of all, the border and mask checks of the refined centres. The
same regions as kornia's to float rounding (``tests/plugins/test_hessian_detector.py``); the whole
extractor against kornia's modules: ``benchmarks/hessaff_speed.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._gradients import BlobHessian

BORDER = 5  # px of the octave a region's half-size box must stay inside (kornia's)
MAX_SHIFT = 0.6  # a sub-voxel shift beyond this moves the centre one voxel and solves again (kornia's)
SOLVE_EPS = 1e-7  # a fit whose |det H| <= SOLVE_EPS * max|H|^3 is not refined (kornia's)

# the 26 neighbours and the centre of a voxel, as (d, h, w) offsets, centre at index 13 (kornia's order)
_OFFSETS = torch.stack(torch.meshgrid(*[torch.arange(-1, 2)] * 3, indexing="ij"), -1).view(27, 3)


class HessianDetector(nn.Module):
    """``detect(grey (1, 1, H, W), mask (1, 1, H, W) | None, n)`` → (responses (M,), frames (M, 2, 3)): the ``n``
    strongest scale-space extrema of the determinant of the Hessian (maxima, and minima scored by their
    magnitude), upright circular frames of radius ``mr_size`` × scale in the image's pixels, best first;
    M ≤ n, every one inside the image's border and the mask. The mask is read as allowed (> 0) or not:
    kornia would also weight the scores by a soft mask's values; the extractors' masks are 0 or 1."""

    def __init__(self, mr_size: float = 6.0, levels: int = 3, init_sigma: float = 1.6, min_size: int = 32,
                 refine_iterations: int = 10) -> None:
        super().__init__()
        from kornia.geometry import ScalePyramid

        self.mr_size, self.levels, self.refine_iterations = mr_size, levels, refine_iterations
        # levels + 2 levels an octave are searched (kornia builds one more by default, which no search reads)
        self.pyramid = ScalePyramid(levels, init_sigma, min_size, double_image=False, extra_levels=2)
        self.response = BlobHessian()

    def detect(self, grey: torch.Tensor, mask: torch.Tensor | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        octaves, sigmas, _ = self.pyramid(grey)
        height, width = grey.shape[-2:]
        found = [self._octave(octave[0, 0, : self.levels + 2], sigma[0, : self.levels + 2], mask, n,
                              ((width - 1) / max(octave.shape[-1] - 1, 1), (height - 1) / max(octave.shape[-2] - 1, 1)))
                 for octave, sigma in zip(octaves, sigmas)]
        scores = torch.cat([f[0] for f in found])
        frames = torch.cat([f[1] for f in found])
        best = torch.topk(scores, min(n, len(scores))).indices
        best = best[torch.isfinite(scores[best])]
        return scores[best], frames[best]

    def _octave(self, octave: torch.Tensor, sigmas: torch.Tensor, mask: torch.Tensor | None, n: int,
                to_image: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """One octave (L, h, w) → its top ``n`` candidates' scores (k,) — ``-inf`` where the border or mask
        check rejects one — and frames (k, 2, 3) in the image's pixels."""
        levels, h, w = octave.shape
        response = self.response(octave[:, None], sigmas).view(levels, h, w)
        keep = None if mask is None else _min_pool(mask[0, 0], h, w) > 0  # (h, w)
        maxima, minima = strict_extrema(response, keep)  # (M, 3) each: (d, y, x), flattened order
        up_coords, up_values = refine(response, maxima, self.refine_iterations)
        down_coords, down_values = refine(-response, minima, self.refine_iterations)
        # a minimum competes with its magnitude where that beats the response itself (kornia's take_min_mask)
        down_wins = down_values > response[minima[:, 0], minima[:, 1], minima[:, 2]]
        positions = torch.cat([maxima, minima[down_wins]])
        order = torch.argsort(_flat(positions, h, w))  # the octave's flattened order, as kornia ranks
        scores = torch.cat([up_values, down_values[down_wins]])[order]
        coords = torch.cat([up_coords, down_coords[down_wins]])[order]
        top = torch.topk(scores, min(n, len(scores)))
        scores, coords = top.values, coords[top.indices]
        scale = sigmas[0] * torch.pow(2.0, coords[:, 0] / self.levels)
        radius = self.mr_size * scale  # the frame's half side, in octave pixels
        cx, cy = coords[:, 2], coords[:, 1]
        half = radius / 2  # kornia checks the frame scaled by 0.5 against the border
        good = ((cx - half >= BORDER) & (cx + half <= w - 1 - BORDER)
                & (cy - half >= BORDER) & (cy + half <= h - 1 - BORDER))
        if keep is not None:  # every octave pixel the refined centre touches must be allowed
            for yy in (cy.floor(), cy.ceil()):
                for xx in (cx.floor(), cx.ceil()):
                    good &= keep[yy.long().clamp(0, h - 1), xx.long().clamp(0, w - 1)]
        frames = torch.zeros(len(scores), 2, 3, dtype=octave.dtype, device=octave.device)
        frames[:, 0, 0] = radius * to_image[0]
        frames[:, 1, 1] = radius * to_image[1]
        frames[:, 0, 2] = cx * to_image[0]
        frames[:, 1, 2] = cy * to_image[1]
        return scores.masked_fill(~good, float("-inf")), frames


def _flat(positions: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return (positions[:, 0] * h + positions[:, 1]) * w + positions[:, 2]


def _box_max(volume: torch.Tensor) -> torch.Tensor:
    """(L, h, w) → (L - 2, h - 2, w - 2): the maximum of each interior voxel's 3 × 3 × 3 box."""
    m = torch.maximum(torch.maximum(volume[:, :, :-2], volume[:, :, 1:-1]), volume[:, :, 2:])
    m = torch.maximum(torch.maximum(m[:, :-2], m[:, 1:-1]), m[:, 2:])
    return torch.maximum(torch.maximum(m[:-2], m[1:-1]), m[2:])


def strict_extrema(response: torch.Tensor, keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Interior voxels of ``response`` (L, h, w) strictly above (maxima) or below (minima) all 26 neighbours,
    at a pixel ``keep`` (h, w) allows: (M, 3) (level, y, x) each, in flattened order
    (``kornia.geometry.subpix.nms3d_minmax`` and the detector's mask)."""
    found = []
    for sign in (1.0, -1.0):
        volume = response if sign > 0 else -response
        centre = volume[1:-1, 1:-1, 1:-1]
        at_top = centre >= _box_max(volume)
        # strictly above both x neighbours: a flat stretch (clipped sky, a plain background) would otherwise
        # make every one of its voxels a candidate for the tie check below
        at_top &= (centre > volume[1:-1, 1:-1, :-2]) & (centre > volume[1:-1, 1:-1, 2:])
        if keep is not None:
            at_top &= keep[1:-1, 1:-1]
        candidates = at_top.nonzero() + 1  # (K, 3): equal to their box's maximum
        neighbours = candidates[:, None] + _OFFSETS.to(candidates.device)  # (K, 27, 3)
        values = volume[neighbours[..., 0], neighbours[..., 1], neighbours[..., 2]]  # (K, 27)
        ties = (values == values[:, 13:14]).sum(1) > 1  # the centre equals itself once
        found.append(candidates[~ties])
    return found[0], found[1]


def refine(volume: torch.Tensor, extrema: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-voxel maxima of ``volume`` (L, h, w) by quadratic fits at ``extrema`` (M, 3) (level, y, x):
    (coords (M, 3) (level, y, x), values (M,)) — kornia's ``conv_quad_interp3d(n_iters=iterations)``.

    Each fit solves the 3 × 3 × 3 neighbourhood's gradient and Hessian for the shift; a shift beyond
    ``MAX_SHIFT`` on an axis moves the centre one voxel along it and the fit is made again there. A point
    keeps its voxel and value when a fit is singular, a move would reach the border or leave every
    extremum's 3 × 3 × 3 neighbourhood (kornia solves only there), it still moves at the last iteration, or
    its shift exceeds 1.5 voxels."""
    levels, h, w = volume.shape
    dtype = volume.dtype
    size = torch.tensor([levels, h, w], device=volume.device)
    near = torch.zeros(levels, h, w, dtype=torch.bool, device=volume.device)  # kornia's precomputed voxels
    if len(extrema):
        around = (extrema[:, None] + _OFFSETS.to(extrema.device)).reshape(-1, 3)
        inside = ((around >= 1) & (around <= size - 2)).all(1)
        around = around[inside]
        near[around[:, 0], around[:, 1], around[:, 2]] = True
    current = extrema.clone()
    shift = torch.zeros(len(extrema), 3, dtype=dtype, device=volume.device)
    gain = torch.zeros(len(extrema), dtype=dtype, device=volume.device)
    valid = torch.ones(len(extrema), dtype=torch.bool, device=volume.device)
    moved = torch.zeros_like(valid)
    active = torch.arange(len(extrema), device=volume.device)  # points whose centre changed last time
    for _ in range(iterations):
        if len(active) == 0:
            break
        at = current[active]
        solved_shift, solved_gain, solved = _fit(volume, at)
        ok = valid[active] & solved & near[at[:, 0], at[:, 1], at[:, 2]]
        shift[active] = torch.where(ok[:, None], solved_shift, shift[active])
        gain[active] = torch.where(ok, solved_gain, gain[active])
        step = ((solved_shift > MAX_SHIFT).long() - (solved_shift < -MAX_SHIFT).long()) * ok[:, None].long()
        target = at + step
        ok &= ((target >= 1) & (target <= size - 2)).all(1)
        valid[active] = ok
        current[active] = target
        moving = (step != 0).any(1)
        moved[active] = moving
        active = active[moving & ok]
    valid &= ~moved & (shift.abs() <= 1.5).all(1)
    where = torch.where(valid[:, None], current, extrema)
    coords = where.to(dtype) + torch.where(valid[:, None], shift, torch.zeros_like(shift))
    values = volume[where[:, 0], where[:, 1], where[:, 2]] + 0.5 * torch.where(valid, gain, torch.zeros_like(gain))
    return coords, values


def _fit(volume: torch.Tensor, at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quadratic fits at voxels ``at`` (K, 3), all interior: (shift (K, 3) (level, y, x), gradient · shift (K,),
    solved (K,)); kornia's finite differences and scaled Cramer solve."""
    around = at[:, None] + _OFFSETS.to(at.device)
    p = volume[around[..., 0], around[..., 1], around[..., 2]]  # (K, 27), index = (dd+1)*9 + (dh+1)*3 + (dw+1)
    centre = p[:, 13]
    gx, gy, gs = 0.5 * (p[:, 14] - p[:, 12]), 0.5 * (p[:, 16] - p[:, 10]), 0.5 * (p[:, 22] - p[:, 4])
    dxx = p[:, 14] - 2.0 * centre + p[:, 12]
    dyy = p[:, 16] - 2.0 * centre + p[:, 10]
    dss = p[:, 22] - 2.0 * centre + p[:, 4]
    dxy = 0.25 * (p[:, 17] - p[:, 15] - p[:, 11] + p[:, 9])
    dxs = 0.25 * (p[:, 23] - p[:, 21] - p[:, 5] + p[:, 3])
    dys = 0.25 * (p[:, 25] - p[:, 19] - p[:, 7] + p[:, 1])
    sx, sy, ss, solved = _solve(dxx, dyy, dss, dxy, dxs, dys, -gx, -gy, -gs)
    return torch.stack([ss, sy, sx], 1), gx * sx + gy * sy + gs * ss, solved


def _solve(dxx, dyy, dss, dxy, dxs, dys, r0, r1, r2):
    """H [sx, sy, ss] = [r0, r1, r2] for the symmetric H, by Cramer's rule on the system scaled by a power of
    two that brings max |H| to [1, 2) (kornia's ``_solve_cramer_sym3x3``); unsolved shifts are 0."""
    limit = -math.log2(torch.finfo(dxx.dtype).tiny)
    hessian = _exponent(dxx, dyy, dss, dxy, dxs, dys)
    hessian = torch.where(torch.isfinite(hessian), hessian, torch.zeros_like(hessian))
    exponent = torch.maximum(hessian, (_exponent(r0, r1, r2) - 63).clamp(max=0)).clamp(-limit, limit)
    power = torch.exp2(exponent.abs())
    factor = torch.where(exponent > 0, power.reciprocal(), power)
    dxx, dyy, dss, dxy, dxs, dys, r0, r1, r2 = (t * factor for t in (dxx, dyy, dss, dxy, dxs, dys, r0, r1, r2))
    cf00 = dyy * dss - dys * dys
    cf01 = dxy * dss - dys * dxs
    cf02 = dxy * dys - dyy * dxs
    det = dxx * cf00 - dxy * cf01 + dxs * cf02
    scale = torch.stack((dxx.abs(), dyy.abs(), dss.abs(), dxy.abs(), dxs.abs(), dys.abs())).amax(0)
    solved = det.abs() > SOLVE_EPS * scale * scale * scale
    safe = torch.where(solved, det, torch.ones_like(det))
    sx = (r0 * cf00 - dxy * (r1 * dss - dys * r2) + dxs * (r1 * dys - dyy * r2)) / safe
    sy = (dxx * (r1 * dss - dys * r2) - r0 * cf01 + dxs * (dxy * r2 - r1 * dxs)) / safe
    ss = (dxx * (dyy * r2 - r1 * dys) - dxy * (dxy * r2 - r1 * dxs) + r0 * cf02) / safe
    zero = torch.zeros_like(sx)
    return torch.where(solved, sx, zero), torch.where(solved, sy, zero), torch.where(solved, ss, zero), solved


def _exponent(*entries: torch.Tensor) -> torch.Tensor:
    magnitude = torch.stack([t.abs() for t in entries]).amax(0)
    usable = torch.isfinite(magnitude) & (magnitude > 0)
    exponent = torch.floor(torch.log2(torch.where(usable, magnitude, torch.ones_like(magnitude))))
    return torch.where(usable, exponent, torch.full_like(exponent, -math.inf))


def _min_pool(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(H, W) mask → (h, w): each octave pixel the smallest value over the source pixels its
    ``adaptive_max_pool2d`` window covers (kornia's conservative resample)."""
    return -F.adaptive_max_pool2d(-mask[None, None], (h, w))[0, 0] if mask.shape != (h, w) else mask
