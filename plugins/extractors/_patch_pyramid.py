"""Patches of local affine frames from one pyramid of one image: ``kornia.feature.extract_patches_from_pyramid``,
built once for every patch size, with the sampling grid made in two operators.

kornia builds the image's pyramid again for every call (the Hessian-affine extractor makes three: affine
shape, orientation, descriptor) and makes each call's grid through ``affine_grid`` and six more passes over
the (N, P, P, 2) grid. Here one :class:`PatchPyramid` packs the levels side by side in one atlas, as kornia
does, and each call's grid is one broadcast sum of a row term and a column term (the grid is affine in
the cell's row and column), every per-level constant folded into the frame first; only the frames that
reach past their level's border pixels are clamped. Same patches to float rounding (``tests/plugins/test_patch_pyramid.py`` checks against kornia).
On one thread here, 1,024 frames of 32 px from a 345 × 512 image took 10–12 ms against kornia's 36–53 ms
(timed ad hoc, 3 Dec 2026); the whole extractor against kornia's modules: ``benchmarks/hessaff_speed.py``.

Convention (kornia's): cell (i, j) of a P × P patch samples the image at ``c + A (u_j, u_i)``, with
``u_k = (2k + 1) / P - 1`` and the frame ``[A | c]`` in pixels; the level is ``floor(log2(2 s / P))`` for the
frame's scale ``s = sqrt(|det A|)``, clamped to the levels whose shorter side is at least P; a cell outside the
image reads the nearest border pixel of its level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def level_sizes(height: int, width: int, patch_size: int) -> list[tuple[int, int]]:
    """(h, w) of each pyramid level kornia samples patches of ``patch_size`` from: the image, then halvings
    (``pyrdown``'s floor) while the shorter side stays at least ``patch_size``."""
    sizes = [(height, width)]
    for _ in range(1, max(1, min(height, width) // patch_size)):
        h, w = sizes[-1]
        if min(h, w) <= 2 or min(h // 2, w // 2) < patch_size:
            break
        sizes.append((h // 2, w // 2))
    return sizes


class PatchPyramid:
    """The Gaussian pyramid of one (1, 1, H, W) float image, packed in an atlas; :meth:`patches` samples
    frames of any patch size ≥ ``smallest_patch`` from it."""

    def __init__(self, image: torch.Tensor, smallest_patch: int) -> None:
        from kornia.geometry.transform import pyrdown

        if image.dim() != 4 or image.shape[:2] != (1, 1):
            raise ValueError(f"PatchPyramid takes one grey image (1, 1, H, W), got {tuple(image.shape)}")
        self.height, self.width = int(image.shape[-2]), int(image.shape[-1])
        self.smallest_patch = smallest_patch
        self.sizes = level_sizes(self.height, self.width, smallest_patch)
        widths = [w + 2 for _, w in self.sizes]
        self.atlas = image.new_zeros(1, 1, self.height + 2, sum(widths))
        level, left = image, 0
        for index, (h, w) in enumerate(self.sizes):  # one-pixel replicated guard around each level
            if index:
                level = pyrdown(level)
            self.atlas[:, :, : h + 2, left: left + w + 2] = F.pad(level, (1, 1, 1, 1), mode="replicate")
            left += w + 2
        self._levels = self._level_frames(widths)

    def _level_frames(self, packed_widths: list[int]) -> torch.Tensor:
        """(L, 4, 2): per level and axis (x, y), the scale and offset that take the image's grid coordinates
        ((2p + 1) / side - 1 for pixel p) to the atlas's, and the level's outermost pixel centres there."""
        atlas_h, atlas_w = self.atlas.shape[-2:]
        rows, left = [], 0
        for (h, w), packed in zip(self.sizes, packed_widths):
            scale = (w / atlas_w, h / atlas_h)
            offset = ((w + 2.0 * (left + 1)) / atlas_w - 1.0, (h + 2.0) / atlas_h - 1.0)
            low = (-1.0 + 1.0 / w, -1.0 + 1.0 / h)
            high = (1.0 - 1.0 / w, 1.0 - 1.0 / h)
            rows.append([scale, offset, [lo * s + o for lo, s, o in zip(low, scale, offset)],
                         [hi * s + o for hi, s, o in zip(high, scale, offset)]])
            left += packed
        return torch.tensor(rows, dtype=self.atlas.dtype, device=self.atlas.device)

    def patches(self, lafs: torch.Tensor, patch_size: int) -> torch.Tensor:
        """Frames (N, 2, 3) in the image's pixels → patches (N, 1, P, P); a non-finite frame gives zeros."""
        if patch_size < self.smallest_patch:
            raise ValueError(f"patch size {patch_size} is below the pyramid's smallest, {self.smallest_patch}")
        n = lafs.shape[0]
        if n == 0:
            return self.atlas.new_zeros(0, 1, patch_size, patch_size)
        lafs = lafs.to(self.atlas.dtype)
        invalid = ~torch.isfinite(lafs).flatten(1).all(1)
        lafs = lafs.masked_fill(invalid[:, None, None], 0.0)
        levels = len(level_sizes(self.height, self.width, patch_size))
        scale = torch.sqrt(torch.linalg.det(lafs[:, :, :2]).abs() + 1e-10)
        level = torch.log2(2.0 * scale / patch_size).clamp(0.0, levels - 1).long()
        frame = self._levels[level]  # (N, 4, 2)
        side = lafs.new_tensor([self.width, self.height])
        # grid = ((2 (c + A u) + 1) / side - 1) * level scale + level offset, clamped to the level's pixels
        linear = lafs[:, :, :2] * (2.0 * frame[:, 0] / side)[:, :, None]  # (N, 2, 2)
        shift = ((2.0 * lafs[:, :, 2] + 1.0) / side - 1.0) * frame[:, 0] + frame[:, 1]  # (N, 2)
        steps = (2.0 * torch.arange(patch_size, dtype=lafs.dtype, device=lafs.device) + 1.0) / patch_size - 1.0
        along_x = steps[None, :, None] * linear[:, None, :, 0] + shift[:, None]  # (N, P, 2): u_j's share and c
        along_y = steps[None, :, None] * linear[:, None, :, 1]  # (N, P, 2): u_i's share
        grid = (along_y[:, :, None] + along_x[:, None]).view(n, -1, 2)  # (N, P², 2), rows i, columns j
        reach = steps[-1] * linear.abs().sum(2)  # (N, 2): how far the grid goes from its centre, ``shift``
        outside = ((shift - reach < frame[:, 2]) | (shift + reach > frame[:, 3])).any(1).nonzero()[:, 0]
        if len(outside):  # only frames reaching past their level's border pixels need the clamp
            grid[outside] = torch.clamp(grid[outside], frame[outside, None, 2], frame[outside, None, 3])
        sampled = F.grid_sample(self.atlas, grid.view(1, n * patch_size, patch_size, 2),
                                padding_mode="border", align_corners=False)  # (1, 1, N P, P)
        out = sampled.view(n, 1, patch_size, patch_size)
        return out.masked_fill_(invalid[:, None, None, None], 0.0) if bool(invalid.any()) else out
