"""Deterministic synthetic Saimaa ringed-seal data set: the engine's offline demo.

Every individual is drawn once in a *canonical body frame*: a fixed canvas of ``CANON_HW``
pixels in which the seal lies straight, head to the left, back up. Its identity is the
pelage pattern drawn there: light-grey rings (closed and open, irregular, some merging)
around darker spots, dense on the back and flank, sparse on the head and belly.

Each photo samples that canonical seal through a per-photo inverse map (pose, anisotropic
viewpoint squash, body bend, smooth random displacement field), shades it with a directional
light and occasional wet highlights, composites it over a granite or water background with a
cast shadow, hides part of it behind a boulder, the water line or a branch, and applies
global lighting, blur, sensor noise and sometimes JPEG softness. The body mask and the ring
mask go through the same map, so they align with the photo; occluded pixels are removed
from both.

Photos of one individual in one encounter share a ``sequence`` and that encounter's
background, light and rough pose. A known individual's queries come from an encounter of
their own; unknown individuals only appear among the queries.

Everything is seeded from the config through ``numpy.random.SeedSequence`` keys, so one
config gives byte-identical PNGs. Only numpy, scipy.ndimage and Pillow are used.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

__all__ = [
    "GENERATOR_VERSION",
    "GALLERY_COLUMNS",
    "QUERY_COLUMNS",
    "SealDatasetConfig",
    "SyntheticDataset",
    "generate_seal_dataset",
]

GENERATOR_VERSION = "seals-3"  # 2: query.csv names each query's individual; 3: keypoints column
SPECIES = "ringed_seal"
ORIENTATION = "left"
NEW_INDIVIDUAL = "new_individual"
GALLERY_COLUMNS = (
    "image_id", "identity", "path", "mask_path", "pattern_path", "sequence", "species", "orientation", "keypoints",
)
QUERY_COLUMNS = (
    "image_id", "path", "mask_path", "pattern_path", "sequence", "species", "orientation", "keypoints", "truth",
    "individual",
)  # individual: who it really is, unknown ones included (for harness splits; the engine reads truth)

# Canonical body frame: (H, W) canvas; the trunk runs from the nose to the tail base with its
# belly near row _BELLY_Y, the hind flippers extend past the tail base to about x = 460.
CANON_HW = (200, 480)
_NOSE_X, _TAIL_X, _BELLY_Y = 30.0, 400.0, 168.0
_BODY_CENTER = (110.0, 235.0)  # (y, x) canonical point placed at a photo's pose centre
_BODY_LENGTH = 430.0  # nose to flipper tips, canonical px
_BODY_HEIGHT = 135.0  # back line to belly line incl. fore flipper, canonical px

# Body landmarks recorded in the keypoints column (Landmark-Id): the eye, the middle of the
# fore flipper, the middle of the hind flippers; null where out of frame or hidden.
LANDMARKS = ("head", "fore_flipper", "hind_flippers")
_LANDMARK_TOLERANCE = 3.0  # canonical px: a landmark farther than this from every pixel is out of frame

# Encounter settings and their occlusion choices (kind, probability).
_SETTINGS = ("rock", "shore", "water")
_SETTING_P = (0.45, 0.35, 0.20)
_OCCLUSIONS = {
    "rock": (("none", 0.35), ("boulder", 0.40), ("branch", 0.25)),
    "shore": (("none", 0.30), ("boulder", 0.30), ("branch", 0.15), ("waterline", 0.25)),
    "water": (("waterline", 1.0),),
}


# --------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealDatasetConfig:
    """How many seals and photos to make, the photo size ``(H, W)`` and the master seed."""

    n_known: int = 16  # individuals in the gallery
    n_unknown: int = 6  # individuals that appear only among queries (truth new_individual)
    gallery_per_individual: int = 3
    queries_per_known: int = 2
    queries_per_unknown: int = 2
    image_size: tuple[int, int] = (384, 512)  # (H, W) of every image
    seed: int = 0
    # difficulty knobs, 1.0 = the generator's own ranges (0 = none of it, 2 = twice as much):
    pose_variation: float = 1.0  # in-plane rotation, viewpoint squash, body warp between photos
    occlusion: float = 1.0  # how often something hides the seal, and how much of it
    blur: float = 1.0  # defocus blur and sensor noise
    # share of query encounters where a second seal (another individual) lies beside the queried
    # one; each of the two gets its own query rows (same photo, own mask, own sequence)
    multi_seal: float = 0.0

    def validate(self) -> None:
        for name in ("pose_variation", "occlusion", "blur"):
            if not 0.0 <= getattr(self, name) <= 4.0:
                raise ValueError(f"{name} must be in [0, 4], got {getattr(self, name)}")
        if not 0.0 <= self.multi_seal <= 1.0:
            raise ValueError(f"multi_seal must be in [0, 1], got {self.multi_seal}")
        self._validate_counts()

    def _validate_counts(self) -> None:
        counts = (self.n_known, self.n_unknown, self.queries_per_known, self.queries_per_unknown)
        if min(counts) < 0:
            raise ValueError(f"counts must be >= 0: {self}")
        if self.n_known > 0 and self.gallery_per_individual < 1:
            raise ValueError("gallery_per_individual must be >= 1 when n_known > 0")
        if len(self.image_size) != 2 or min(self.image_size) < 64:
            raise ValueError(f"image_size must be (H, W) with both >= 64, got {self.image_size}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @staticmethod
    def from_json(d: dict) -> "SealDatasetConfig":
        d = {"multi_seal": 0.0, **d}
        d["image_size"] = tuple(int(v) for v in d["image_size"])
        return SealDatasetConfig(**d)


@dataclass(frozen=True)
class SyntheticDataset:
    """A generated data set: its folder, the two manifests and the config that made it."""

    root: Path
    gallery_csv: Path
    query_csv: Path
    config: SealDatasetConfig


# --------------------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------------------


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``e0`` to 1 at ``e1``; same shape as ``x``."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _spectral_noise(rng: np.random.Generator, hw: tuple[int, int], beta: float,
                    f_low: float = 0.0, f_high: float = 0.5, angle: float | None = None,
                    anisotropy: float = 1.0) -> np.ndarray:
    """Zero-mean, unit-std noise float32 (H, W) with power spectrum ~ f**-beta.

    Frequencies (cycles/px) outside ``[f_low, f_high]`` are softly removed. With ``angle``
    the spectrum is squeezed by ``anisotropy`` along that direction (ripples, streaks).
    """
    h, w = hw
    white = rng.standard_normal((h, w)).astype(np.float32)
    spec = np.fft.rfft2(white)
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    if angle is not None:
        c, s = math.cos(angle), math.sin(angle)
        fa = fx * c + fy * s
        fb = -fx * s + fy * c
        f = np.sqrt(fa * fa + (fb * anisotropy) ** 2)
    else:
        f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    gain = f ** (-beta / 2.0)
    if f_low > 0:
        gain *= 1.0 - np.exp(-((f / f_low) ** 4))
    if f_high < 0.5:
        gain *= np.exp(-((f / f_high) ** 2))
    gain[0, 0] = 0.0
    out = np.fft.irfft2(spec * gain, s=(h, w)).astype(np.float32)
    out -= out.mean()
    out /= out.std() + 1e-8
    return out


def _rbf_field(rng: np.random.Generator, hw: tuple[int, int], cells: tuple[int, int],
               amplitude: float) -> np.ndarray:
    """Very smooth random field float32 (H, W): Gaussian bumps on a ``cells`` grid.

    Separable radial basis ``Ky @ G @ Kx.T``, written as a sum of outer products so tiny
    matrix products never wake the BLAS thread pool.
    """
    h, w = hw
    gh, gw = cells
    grid = rng.standard_normal((gh, gw)).astype(np.float32) * amplitude

    def basis(n: int, k: int) -> np.ndarray:
        centres = np.linspace(-0.5, n - 0.5, k, dtype=np.float32)
        width = n / max(k - 1, 1)
        x = np.arange(n, dtype=np.float32)[:, None]
        b = np.exp(-0.5 * ((x - centres[None, :]) / width) ** 2)
        return b / b.sum(axis=1, keepdims=True)

    ky, kx = basis(h, gh), basis(w, gw)
    rows = (ky[:, :, None] * grid[None, :, :]).sum(axis=1)  # (H, gw)
    out = np.zeros((h, w), np.float32)
    for j in range(gw):
        out += rows[:, j:j + 1] * kx[None, :, j]
    return out


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, along: float,
             across: float, angle: float) -> np.ndarray:
    """Boolean (H, W): inside an ellipse of semi-axes ``along``/``across`` rotated by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xx - cx, yy - cy
    a = dx * c + dy * s
    b = -dx * s + dy * c
    return (a / along) ** 2 + (b / across) ** 2 <= 1.0


def _child_rng(config: SealDatasetConfig, *key: int) -> np.random.Generator:
    """Generator for one item of the data set, keyed by integers under the master seed."""
    return np.random.default_rng(np.random.SeedSequence([config.seed, *key]))


# --------------------------------------------------------------------------------------
# The individual: silhouette, pelage pattern, fur (canonical frame)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Body:
    """Canonical silhouette, all float32 (Hc, Wc).

    alpha: soft body coverage in [0, 1]; v: cross-body coordinate (-1 back line, 0 midline,
    +1 belly line); t: along-body coordinate (0 nose, 1 tail base, > 1 hind flippers);
    flipper: 1 on the flippers; eye: 1 on the eye and nose. landmarks: (len(LANDMARKS), 2)
    canonical (y, x) of the eye, the fore flipper's middle and the hind flippers' middle.
    """

    alpha: np.ndarray
    v: np.ndarray
    t: np.ndarray
    flipper: np.ndarray
    eye: np.ndarray
    landmarks: np.ndarray


def _body_silhouette(rng: np.random.Generator) -> _Body:
    """A plump seal lying on its belly, head left: back arch, flat belly, head, flippers.

    The trunk is bounded by a belly line (``_BELLY_Y`` minus a lift that raises the front and
    the tail) and a back line (belly line minus the height profile). A round head with a
    short muzzle sits on the neck, a fore flipper lies on the lower flank and the hind
    flippers form a notched fan behind the tail.
    """
    hc, wc = CANON_HW
    yy, xx = np.mgrid[0:hc, 0:wc].astype(np.float32)
    length = _TAIL_X - _NOSE_X
    hmax = rng.uniform(108.0, 122.0)
    knots = np.array([.05, .10, .15, .20, .28, .40, .55, .70, .82, .92, 1.0])
    height = np.array([.40, .45, .47, .56, .78, .96, 1.0, .86, .62, .40, .24])
    lift = np.array([.22, .20, .17, .13, .06, .0, .0, .02, .08, .17, .27])
    height = height * (1 + rng.uniform(-0.05, 0.05, height.shape)) * hmax
    lift = lift * hmax

    t_col = (xx[0] - _NOSE_X) / length
    h_col = np.interp(t_col, knots, height).astype(np.float32)
    belly = (_BELLY_Y - np.interp(t_col, knots, lift)).astype(np.float32)
    back = belly - h_col
    mid = (belly + back) / 2
    on_trunk = (t_col >= knots[0]) & (t_col <= 1)
    trunk = on_trunk[None, :] & (yy >= back[None, :]) & (yy <= belly[None, :])

    # Round head held level, low or raised, with a short blunt muzzle.
    head_along, head_across = 0.09 * length, rng.uniform(0.24, 0.28) * hmax
    hx = _NOSE_X + 0.9 * head_along
    i_h = int(round(_NOSE_X + 0.1 * length))
    hy = mid[i_h] - rng.uniform(-0.05, 0.15) * hmax
    tilt = math.radians(rng.uniform(-12, 12))
    head = _ellipse(yy, xx, hy, hx, head_along, head_across, tilt)
    muzzle = _ellipse(yy, xx, hy + 0.35 * head_across, _NOSE_X + 13.0, 14.0, 0.42 * head_across, tilt)

    # Fore flipper on the lower flank, pointing back and down.
    i_f = int(round(_NOSE_X + 0.3 * length))
    fore_yx = (float(belly[i_f] - 0.2 * h_col[i_f]), i_f + 14.0)
    fore = _ellipse(yy, xx, fore_yx[0], fore_yx[1], rng.uniform(24, 30),
                    rng.uniform(8, 10), math.radians(rng.uniform(20, 35)))
    # Hind flippers held together: a fan widening backwards with a notch at its end.
    fan_tilt = math.radians(rng.uniform(-10, 10))
    i_t = int(_TAIL_X)
    fan_len = rng.uniform(52, 62)
    along = xx - _TAIL_X + 4.0
    cy = mid[i_t] + along * math.tan(fan_tilt)
    half = 0.5 * h_col[i_t] + along * rng.uniform(0.12, 0.2)
    notch = 5.0 * np.exp(-(((yy - cy) / 5.0) ** 2))
    hind = (along >= 0) & (np.abs(yy - cy) <= half) & (along <= fan_len - notch)
    flipper = (fore | hind) & ~trunk
    shape = trunk | head | muzzle | fore | hind
    alpha = ndimage.gaussian_filter(shape.astype(np.float32), 0.7)

    v_col = np.clip((yy - mid[None, :]) / np.maximum(h_col[None, :] / 2, 6.0), -1.5, 1.5)
    v = np.where(xx > _TAIL_X, np.clip((yy - cy) / np.maximum(half, 6.0), -1.5, 1.5), v_col)
    t = np.broadcast_to(t_col[None, :], (hc, wc))

    c, s = math.cos(tilt), math.sin(tilt)
    ex, ey = hx - 0.25 * head_along * c, hy - 0.3 * head_across - 0.25 * head_along * s
    eye = _ellipse(yy, xx, ey, ex, 5.6, 4.6, tilt)
    nostril = _ellipse(yy, xx, hy + 0.25 * head_across - 8 * s, _NOSE_X + 3.0, 2.6, 2.0, 0.5)
    eye_f = ndimage.gaussian_filter((eye | nostril).astype(np.float32), 0.8)
    hind_x = _TAIL_X - 4.0 + 0.5 * fan_len
    landmarks = np.array([(ey, ex), fore_yx, (float(mid[i_t]) + (hind_x - _TAIL_X + 4.0) * math.tan(fan_tilt), hind_x)],
                         np.float32)
    return _Body(alpha=alpha, v=v.astype(np.float32), t=t.astype(np.float32),
                 flipper=ndimage.gaussian_filter(flipper.astype(np.float32), 1.0), eye=eye_f, landmarks=landmarks)


def _body_normals(alpha: np.ndarray) -> np.ndarray:
    """Surface normals float32 (3, Hc, Wc) (x right, y down, z to camera) of a rounded body.

    The height is a circular profile of the distance to the outline, so the back and the
    rim curve away from the camera; flat outside the body.
    """
    inside = alpha > 0.5
    dist = ndimage.distance_transform_edt(inside).astype(np.float32)
    radius = 50.0
    d = np.minimum(dist, radius) / radius
    height = radius * np.sqrt(np.clip(1.0 - (1.0 - d) ** 2, 0.0, 1.0))
    height = ndimage.gaussian_filter(height, 1.5)
    gy, gx = np.gradient(height)
    n = np.stack([-gx, -gy, np.ones_like(gx)])
    return (n / np.linalg.norm(n, axis=0, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class _Ring:
    """One pelage ring in canonical px: centre, radius, thickness, shape harmonics, gaps."""

    cy: float
    cx: float
    radius: float
    thickness: float
    harmonics: tuple[tuple[int, float, float], ...]  # (k, amplitude, phase) of R(theta)
    thick_var: float
    thick_phase: float
    gaps: tuple[tuple[float, float], ...]  # (centre angle, width) in radians
    spot: float  # darkness of the centre spot in [0, 1]
    spot_margin: float  # fur gap between the spot and the ring, px


def _pattern_density(body: _Body) -> np.ndarray:
    """Relative ring density float32 (Hc, Wc): back and flank high, head, belly, flippers low."""
    v, t = body.v, body.t
    back = _smoothstep(-1.05, -0.8, v) * (1.0 - _smoothstep(0.25, 0.75, v))
    along = 0.25 + 0.75 * _smoothstep(0.06, 0.22, t)
    tail = 1.0 - 0.6 * _smoothstep(0.92, 1.1, t)
    dens = back * along * tail * (1.0 - 0.85 * body.flipper) * (body.alpha > 0.9)
    return dens.astype(np.float32)


def _ring_layout(rng: np.random.Generator, body: _Body) -> list[_Ring]:
    """Dart-throw rings over the body, weighted by :func:`_pattern_density`.

    Rings may overlap a little (``spacing`` < 1), which merges neighbours into the
    chain-like network typical of Saimaa ringed seals.
    """
    dens = _pattern_density(body).ravel()
    prob = dens / dens.sum()
    n_target = int(rng.integers(110, 170))
    spacing_lo = rng.uniform(0.78, 0.92)
    log_r = math.log(rng.uniform(5.0, 6.8))
    cand = rng.choice(dens.size, size=2500, p=prob)
    wc = CANON_HW[1]
    rings: list[_Ring] = []
    centres = np.zeros((0, 2), np.float32)
    radii = np.zeros((0,), np.float32)
    for idx in cand:
        cy, cx = divmod(int(idx), wc)
        cy += rng.uniform(-0.5, 0.5)
        cx += rng.uniform(-0.5, 0.5)
        t_here = body.t[int(cy), int(cx)]
        r = float(np.clip(math.exp(log_r + 0.38 * rng.standard_normal()), 3.0, 14.0))
        if t_here < 0.2 or t_here > 1.0:
            r *= 0.65
        if len(rings):
            d = np.hypot(centres[:, 0] - cy, centres[:, 1] - cx)
            if np.any(d < (radii + r) * rng.uniform(spacing_lo, 1.2)):
                continue
        n_harm = int(rng.integers(1, 4))
        harmonics = [(2, rng.uniform(0.0, 0.25), rng.uniform(0, 2 * math.pi))]
        harmonics += [(int(k), rng.uniform(0.0, 0.12), rng.uniform(0, 2 * math.pi))
                      for k in rng.integers(3, 6, size=n_harm)]
        u = rng.random()
        n_gaps = 0 if u < 0.55 else (1 if u < 0.9 else 2)
        gaps = tuple((rng.uniform(0, 2 * math.pi), rng.uniform(0.7, 2.4)) for _ in range(n_gaps))
        rings.append(_Ring(
            cy=cy, cx=cx, radius=r,
            thickness=float(np.clip(r * rng.uniform(0.22, 0.5), 1.5, 4.8)),
            harmonics=tuple(harmonics),
            thick_var=rng.uniform(0.0, 0.45), thick_phase=rng.uniform(0, 2 * math.pi),
            gaps=gaps, spot=rng.uniform(0.35, 0.95) if rng.random() < 0.85 else 0.0,
            spot_margin=rng.uniform(0.0, 2.0)))
        centres = np.vstack([centres, [[cy, cx]]]).astype(np.float32)
        radii = np.append(radii, np.float32(r))
        if len(rings) >= n_target:
            break
    return rings


def _render_rings(rings: list[_Ring], hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise rings: returns (ring coverage, spot darkness), float32 (Hc, Wc) in [0, 1].

    Each ring is ``|rho - R(theta)| < thickness(theta) / 2`` in polar coordinates about
    its centre, anti-aliased over one pixel, with soft angular gaps for open rings.
    """
    h, w = hw
    ring_map = np.zeros(hw, np.float32)
    spot_map = np.zeros(hw, np.float32)
    for rg in rings:
        reach = rg.radius * 1.6 + rg.thickness + 2
        y0, y1 = max(0, int(rg.cy - reach)), min(h, int(rg.cy + reach) + 2)
        x0, x1 = max(0, int(rg.cx - reach)), min(w, int(rg.cx + reach) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - rg.cy, xx - rg.cx
        rho = np.hypot(dy, dx)
        theta = np.arctan2(dy, dx)
        big_r = np.full_like(rho, rg.radius)
        for k, amp, phase in rg.harmonics:
            big_r += rg.radius * amp * np.cos(k * theta + phase)
        thick = rg.thickness * (1.0 + rg.thick_var * np.cos(theta - rg.thick_phase))
        val = np.clip(thick / 2 - np.abs(rho - big_r) + 0.5, 0.0, 1.0)
        for centre, width in rg.gaps:
            ang = np.abs(np.angle(np.exp(1j * (theta - centre))))
            val *= np.clip((ang - width / 2) / 0.35, 0.0, 1.0)
        inner = big_r - thick / 2 - rg.spot_margin
        spot = np.clip(inner - rho + 0.5, 0.0, 1.0) * rg.spot
        np.maximum(ring_map[y0:y1, x0:x1], val, out=ring_map[y0:y1, x0:x1])
        np.maximum(spot_map[y0:y1, x0:x1], spot, out=spot_map[y0:y1, x0:x1])
    return ring_map, spot_map


def _freckles(rng: np.random.Generator, body: _Body) -> np.ndarray:
    """Small light dots and short dashes between the rings: float32 (Hc, Wc) in [0, 1]."""
    img = Image.new("L", (CANON_HW[1], CANON_HW[0]), 0)
    draw = ImageDraw.Draw(img)
    dens = _pattern_density(body).ravel()
    picks = rng.choice(dens.size, size=int(rng.integers(20, 45)), p=dens / dens.sum())
    for idx in picks:
        cy, cx = divmod(int(idx), CANON_HW[1])
        r = rng.uniform(1.0, 2.2)
        if rng.random() < 0.6:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        else:
            a = rng.uniform(0, math.pi)
            ln = rng.uniform(4, 9)
            draw.line([cx - ln * math.cos(a), cy - ln * math.sin(a),
                       cx + ln * math.cos(a), cy + ln * math.sin(a)], fill=255, width=2)
    return ndimage.gaussian_filter(np.asarray(img, np.float32) / 255.0, 0.5)


def _fur_albedo(rng: np.random.Generator, body: _Body, rings: np.ndarray,
                spots: np.ndarray) -> np.ndarray:
    """Canonical fur colour float32 (3, Hc, Wc) in [0, 1].

    Dark grey back (darker along the spine), light belly, light-grey rings, dark spots,
    darker flippers, near-black eye and nose.
    """
    v = body.v
    grey = rng.uniform(0.16, 0.25)
    tint = np.array([rng.uniform(1.0, 1.1), 1.0, rng.uniform(0.94, 1.06)], np.float32)
    belly = rng.uniform(0.40, 0.52)
    ring_grey = rng.uniform(0.42, 0.62)  # some seals have faint patterns
    spine = 1.0 - 0.25 * np.exp(-(((v + 0.85) / 0.35) ** 2))
    mottling = 1.0 + 0.06 * _spectral_noise(rng, CANON_HW, 2.0, f_low=0.01)
    level = grey * spine * mottling
    level = level + (belly - level) * _smoothstep(0.3, 0.95, v)
    level = level * (1.0 - 0.5 * spots)
    level = level + (ring_grey - level) * rings
    level = level * (1.0 - 0.2 * body.flipper)
    level = level * (1.0 - 0.8 * body.eye)
    return np.clip(level[None] * tint[:, None, None], 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class _Individual:
    """One seal's canonical appearance, all float32 on the (Hc, Wc) canvas.

    ``stack`` rows: 0-2 albedo RGB, 3 alpha, 4 ring coverage, 5-7 surface normal.
    ``landmarks``: canonical (y, x) of each of LANDMARKS, float32 (K, 2).
    """

    stack: np.ndarray
    landmarks: np.ndarray


def _make_individual(rng: np.random.Generator) -> _Individual:
    """Silhouette, ring pattern, fur and normals of one seal (its identity)."""
    body = _body_silhouette(rng)
    rings, spots = _render_rings(_ring_layout(rng, body), CANON_HW)
    rings = np.maximum(rings, _freckles(rng, body))
    rings *= body.alpha * (1.0 - body.eye)
    spots *= body.alpha
    albedo = _fur_albedo(rng, body, rings, spots)
    normals = _body_normals(body.alpha)
    stack = np.concatenate([albedo, body.alpha[None], rings[None], normals]).astype(np.float32)
    return _Individual(stack=stack, landmarks=body.landmarks)


# --------------------------------------------------------------------------------------
# Per-photo geometry: pose, bend, smooth displacement, inverse map
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pose:
    """Canonical -> image placement of one photo (angles in radians, lengths in px)."""

    angle: float  # in-plane rotation
    scale: float  # image px per canonical px
    aspect: float  # cross-body squash (viewpoint)
    cy: float  # image position of _BODY_CENTER
    cx: float
    bend2: float  # body bend, canonical px at the body ends
    bend3: float
    head_turn: float
    warp: float  # amplitude of the smooth random displacement, canonical px


def _base_scale(image_hw: tuple[int, int]) -> float:
    """Image px per canonical px at scale 1: the body spans ~68% of the width."""
    h, w = image_hw
    return min(0.68 * w / _BODY_LENGTH, 0.5 * h / _BODY_HEIGHT)


def _scaled(value: float, centre: float, k: float) -> float:
    """``value``'s distance from ``centre`` times ``k`` (exactly ``value`` at k = 1)."""
    return value if k == 1.0 else centre + (value - centre) * k


def _encounter_pose(rng: np.random.Generator, pose_k: float = 1.0) -> dict[str, float]:
    """Rough pose shared by one encounter's photos (the seal stays put)."""
    return {"angle": _scaled(rng.uniform(-26, 26), 0.0, pose_k), "scale": rng.uniform(0.8, 1.2),
            "bend2": rng.normal(0, 9), "bend3": rng.normal(0, 7), "head": rng.normal(0, 8),
            "fx": rng.uniform(-1, 1), "fy": rng.uniform(-1, 1)}


def _placement(angle_deg: float, scale: float, fx: float, fy: float,
               image_hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """Where the body goes: (image px per canonical px, centre y, centre x, height of its box).

    ``fx``/``fy`` in [-1, 1] slide the body's bounding box across the free room of the
    frame (plus a little more, so some photos cut the animal at the border).
    """
    h, w = image_hw
    f = _base_scale(image_hw) * scale
    a = math.radians(angle_deg)
    ext_x = f * (_BODY_LENGTH * abs(math.cos(a)) + _BODY_HEIGHT * abs(math.sin(a)))
    ext_y = f * (_BODY_LENGTH * abs(math.sin(a)) + _BODY_HEIGHT * abs(math.cos(a)))
    slack_x = max(0.0, (w - ext_x) / 2) + 0.04 * w
    slack_y = max(0.0, (h - ext_y) / 2) + 0.04 * h
    return f, h / 2 + fy * slack_y, w / 2 + fx * slack_x, ext_y


def _body_top(base: dict[str, float], image_hw: tuple[int, int]) -> float:
    """Approximate image row of the top of the seal's box in an encounter's photos."""
    _, cy, _, ext_y = _placement(base["angle"], base["scale"], base["fx"], base["fy"], image_hw)
    return cy - ext_y / 2


def _photo_pose(rng: np.random.Generator, base: dict[str, float],
                image_hw: tuple[int, int], pose_k: float = 1.0) -> _Pose:
    """Jitter the encounter pose for one photo and place the body inside the frame."""
    limit = 35 * max(1.0, pose_k)
    angle = float(np.clip(base["angle"] + _scaled(rng.uniform(-10, 10), 0.0, pose_k), -limit, limit))
    scale = float(np.clip(base["scale"] * rng.uniform(0.94, 1.06), 0.75, 1.25))
    fx = float(np.clip(base["fx"] + rng.uniform(-0.3, 0.3), -1, 1))
    fy = float(np.clip(base["fy"] + rng.uniform(-0.3, 0.3), -1, 1))
    f, cy, cx, _ = _placement(angle, scale, fx, fy, image_hw)
    return _Pose(
        angle=math.radians(angle), scale=f, aspect=max(0.3, _scaled(rng.uniform(0.86, 1.12), 1.0, pose_k)), cy=cy, cx=cx,
        bend2=base["bend2"] + rng.normal(0, 6), bend3=base["bend3"] + rng.normal(0, 5),
        head_turn=base["head"] + rng.normal(0, 6), warp=_scaled(rng.uniform(2.5, 5.5), 0.0, pose_k))


def _inverse_map(rng: np.random.Generator, pose: _Pose, image_hw: tuple[int, int]) -> np.ndarray:
    """Canonical (y, x) sampled by every image pixel: float32 (2, H, W).

    Image -> bent canonical frame (inverse rotation, scale, squash), plus a smooth random
    displacement field, then the bend is undone: ``y_straight = y_bent - bend(x)`` with
    ``bend`` a cubic along the body plus a head turn.
    """
    h, w = image_hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - pose.cy, xx - pose.cx
    c, s = math.cos(pose.angle), math.sin(pose.angle)
    along = (c * dx + s * dy) / pose.scale
    across = (-s * dx + c * dy) / (pose.scale * pose.aspect)
    cells = (max(3, h // 90), max(3, w // 90))
    qx = _BODY_CENTER[1] + along + _rbf_field(rng, image_hw, cells, pose.warp)
    qy = _BODY_CENTER[0] + across + _rbf_field(rng, image_hw, cells, pose.warp)
    u = (qx - _BODY_CENTER[1]) / (_BODY_LENGTH / 2)
    head = np.clip((-0.55 - u) / 0.45, 0.0, None) ** 2
    bend = pose.bend2 * (u * u - 0.3) + pose.bend3 * u ** 3 + pose.head_turn * head
    return np.stack([qy - bend, qx]).astype(np.float32)


def _sample_individual(ind: _Individual, coords: np.ndarray, pose: _Pose,
                       fur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample the canonical stack (plus per-photo fur texture) at ``coords`` (2, H, W).

    Returns ``(values float32 (9, N), flat pixel indices int64 (N,))`` for the N pixels
    whose coordinates fall on the canvas; the stack is prefiltered against aliasing.
    """
    hc, wc = CANON_HW
    qy, qx = coords[0].ravel(), coords[1].ravel()
    idx = np.flatnonzero((qy > -2) & (qy < hc + 1) & (qx > -2) & (qx < wc + 1))
    pts = np.stack([qy[idx], qx[idx]])
    shrink = pose.scale * min(1.0, pose.aspect)
    sigma = 0.45 * math.sqrt(max(0.0, 1.0 / shrink ** 2 - 1.0))
    src = np.concatenate([ind.stack, fur[None]])
    if sigma > 0.25:
        src = ndimage.gaussian_filter(src, (0, sigma, sigma), truncate=3.0)
    vals = np.stack([ndimage.map_coordinates(ch, pts, order=1, mode="constant", cval=0.0)
                     for ch in src])
    return vals.astype(np.float32), idx


# --------------------------------------------------------------------------------------
# Light
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Light:
    """Illumination of one photo: sun direction, ambient, wetness, global colour and gradient."""

    azimuth: float  # direction towards the light in the image plane, radians (-pi/2 = up)
    elevation: float
    ambient: float
    wet: float  # specular strength (0 = dry fur)
    shininess: float
    brightness: float
    contrast: float
    white_balance: tuple[float, float, float]
    gradient_angle: float
    gradient: float  # relative brightness change across the image


def _encounter_light(rng: np.random.Generator) -> _Light:
    """Weather and time of day of one encounter."""
    wet = rng.uniform(0.35, 0.9) if rng.random() < 0.4 else rng.uniform(0.0, 0.1)
    return _Light(
        azimuth=-math.pi / 2 + rng.uniform(-1.1, 1.1), elevation=rng.uniform(0.4, 1.15),
        ambient=rng.uniform(0.22, 0.45), wet=wet, shininess=rng.uniform(15, 45),
        brightness=rng.uniform(0.78, 1.22), contrast=rng.uniform(0.8, 1.15),
        white_balance=tuple(rng.uniform(0.93, 1.07, 3).tolist()),
        gradient_angle=rng.uniform(0, 2 * math.pi), gradient=rng.uniform(0.0, 0.35))


def _photo_light(rng: np.random.Generator, base: _Light) -> _Light:
    """Small changes of the encounter's light between consecutive photos."""
    return _Light(
        azimuth=base.azimuth + rng.normal(0, 0.1), elevation=base.elevation + rng.normal(0, 0.05),
        ambient=base.ambient, wet=base.wet, shininess=base.shininess,
        brightness=base.brightness * rng.uniform(0.93, 1.07),
        contrast=base.contrast * rng.uniform(0.95, 1.05),
        white_balance=base.white_balance,
        gradient_angle=base.gradient_angle + rng.normal(0, 0.2),
        gradient=base.gradient * rng.uniform(0.8, 1.2))


def _shade_seal(rng: np.random.Generator, vals: np.ndarray, idx: np.ndarray, pose: _Pose,
                light: _Light, image_hw: tuple[int, int]) -> np.ndarray:
    """Lit seal colour float32 (3, N) from sampled albedo, normals and fur texture.

    Lambert shading with the normals rotated into the image, plus Blinn-Phong highlights
    gated by a blotchy wetness field (wet fur shines in patches).
    """
    albedo, normals, fur = vals[0:3], vals[5:8], vals[8]
    c, s = math.cos(pose.angle), math.sin(pose.angle)
    nx = c * normals[0] - s * normals[1]
    ny = s * normals[0] + c * normals[1]
    nz = normals[2]
    norm = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-6
    ce = math.cos(light.elevation)
    lx, ly, lz = ce * math.cos(light.azimuth), ce * math.sin(light.azimuth), math.sin(light.elevation)
    ndotl = np.clip((nx * lx + ny * ly + nz * lz) / norm, 0.0, 1.0)
    shade = light.ambient + (1.0 - light.ambient) * 1.3 * ndotl
    rgb = albedo * shade[None] * (1.0 + 0.09 * fur)[None]
    if light.wet > 0.0:
        hx, hy, hz = lx, ly, lz + 1.0
        hn = math.sqrt(hx * hx + hy * hy + hz * hz)
        ndoth = np.clip((nx * hx + ny * hy + nz * hz) / (norm * hn), 0.0, 1.0)
        patches = _smoothstep(-0.2, 0.9, _rbf_field(rng, image_hw, (12, 16), 1.4).ravel()[idx])
        spec = light.wet * patches * ndoth ** light.shininess
        rgb = rgb + spec[None] * np.array([0.85, 0.88, 0.92], np.float32)[:, None]
    return rgb.astype(np.float32)


def _global_light(img: np.ndarray, light: _Light) -> np.ndarray:
    """Brightness, contrast, white balance and a directional gradient: (H, W, 3) -> same."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx - w / 2) * math.cos(light.gradient_angle)
            + (yy - h / 2) * math.sin(light.gradient_angle)) / math.hypot(h, w)
    out = (img - 0.4) * light.contrast + 0.4
    out = out * light.brightness * (1.0 + light.gradient * 2.0 * ramp)[..., None]
    return out * np.asarray(light.white_balance, np.float32)


# --------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------


def _granite(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """Granite-like rock float32 (H, W, 3): weathered base, mineral grains, lichen, cracks."""
    h, w = hw
    grey = rng.uniform(0.4, 0.58)
    pink = rng.uniform(0.0, 0.12)  # Saimaa granite runs from grey to reddish grey
    base = np.array([grey * (1 + pink), grey * (1 - 0.2 * pink), grey * (1 - 0.35 * pink)],
                    np.float32)
    large = _spectral_noise(rng, hw, 2.6, f_low=0.002)
    grains = _spectral_noise(rng, hw, 0.0, f_high=rng.uniform(0.12, 0.22))
    grains2 = _spectral_noise(rng, hw, 0.0, f_high=0.2)
    shade = 1.0 + 0.16 * large
    img = base[None, None, :] * shade[..., None]
    img = img * (1.0 + 0.13 * rng.uniform(0.5, 1.2) * grains)[..., None]
    dark = _smoothstep(1.3, 2.0, grains2)  # biotite specks
    light = _smoothstep(1.5, 2.2, -grains2)  # quartz / feldspar flecks
    img = img * (1.0 - 0.55 * dark)[..., None] + 0.22 * light[..., None]
    lichen = _smoothstep(0.9, 1.3, _spectral_noise(rng, hw, 2.2, f_low=0.004))
    lichen_col = np.array([[0.62, 0.6, 0.42], [0.5, 0.52, 0.46], [0.2, 0.2, 0.18]],
                          np.float32)[rng.integers(0, 3)]
    amount = rng.uniform(0.0, 0.7)
    img = img * (1 - amount * lichen[..., None]) + amount * lichen[..., None] * lichen_col
    crack = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(crack)
    for _ in range(int(rng.integers(0, 4))):
        pts = [(rng.uniform(0, w), rng.uniform(0, h))]
        heading = rng.uniform(0, 2 * math.pi)
        for _ in range(int(rng.integers(6, 16))):
            heading += rng.normal(0, 0.35)
            step = rng.uniform(10, 30)
            pts.append((pts[-1][0] + step * math.cos(heading), pts[-1][1] + step * math.sin(heading)))
        draw.line(pts, fill=255, width=int(rng.integers(1, 4)))
    crack_f = ndimage.gaussian_filter(np.asarray(crack, np.float32) / 255.0, 0.8)
    img = img * (1.0 - 0.6 * crack_f)[..., None]
    return np.clip(img, 0.0, 1.0).astype(np.float32)


_WATER_COLOURS = np.array([[0.12, 0.14, 0.16], [0.15, 0.19, 0.24], [0.12, 0.12, 0.11],
                           [0.10, 0.12, 0.12]], np.float32)


def _water(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """Lake water float32 (H, W, 3): dark water whose wind ripples mirror the sky.

    Ripple facets tilted towards the sky (positive vertical slope of a smooth, horizontally
    stretched height field) reflect it; the steepest ones give small bright glints.
    """
    h, w = hw
    base = _WATER_COLOURS[rng.integers(0, len(_WATER_COLOURS))] * rng.uniform(0.9, 1.4)
    angle = math.pi / 2 + rng.normal(0, 0.08)  # crests roughly horizontal
    height = _spectral_noise(rng, hw, 2.0, f_low=0.01, f_high=rng.uniform(0.08, 0.14),
                             angle=angle, anisotropy=rng.uniform(2.5, 5.0))
    slope = np.gradient(height, axis=0)
    slope /= slope.std() + 1e-6
    swell = _spectral_noise(rng, hw, 3.0, f_low=0.003)
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    sky = rng.uniform(0.5, 1.3)
    reflect = 1.0 / (1.0 + np.exp(-1.6 * slope))  # share of sky in each facet
    level = (1.0 + 0.12 * swell - 0.15 * yy * rng.uniform(0, 1.5)) * (0.65 + 0.7 * sky * reflect)
    glint = np.clip(slope - 2.3, 0.0, None) * rng.uniform(0.1, 0.3)
    img = base[None, None, :] * level[..., None]
    img = img + glint[..., None] * np.array([0.8, 0.84, 0.88], np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class _Scene:
    """One encounter's place: background textures (Hb, Wb, 3), larger than a photo.

    ``rock`` and/or ``water`` are None when the setting has none; ``shore`` (Hb, Wb) is
    the water fraction of the background (1 = water).
    """

    setting: str
    rock: np.ndarray | None
    water: np.ndarray | None
    shore: np.ndarray
    margin: int


def _encounter_scene(rng: np.random.Generator, setting: str, image_hw: tuple[int, int],
                     body_top: float) -> _Scene:
    """Backgrounds for one encounter, with a margin so each photo can shift the camera.

    On a shore the water line runs above ``body_top`` (an image row): the seal lies on the
    rock, the lake is behind it.
    """
    h, w = image_hw
    margin = max(8, min(h, w) // 16)
    hw = (h + 2 * margin, w + 2 * margin)
    rock = _granite(rng, hw) if setting in ("rock", "shore") else None
    water = _water(rng, hw) if setting in ("water", "shore") else None
    if setting == "shore":
        xs = np.arange(hw[1], dtype=np.float32)
        wave = 0.025 * h
        highest = body_top - 0.1 * h - 2 * wave
        level = rng.uniform(min(0.1 * h, highest), highest) if highest > 0.1 * h else highest
        y_line = (margin + level + wave * np.sin(xs / rng.uniform(40, 90))
                  + _rbf_field(rng, (1, hw[1]), (1, 8), wave)[0])
        yy = np.arange(hw[0], dtype=np.float32)[:, None]
        shore = 1.0 - _smoothstep(-1.5, 1.5, yy - y_line[None, :])
    else:
        shore = np.full(hw, 1.0 if setting == "water" else 0.0, np.float32)
    return _Scene(setting=setting, rock=rock, water=water, shore=shore.astype(np.float32),
                  margin=margin)


def _background(rng: np.random.Generator, scene: _Scene,
                image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The photo's background crop: (rgb float32 (H, W, 3), water fraction float32 (H, W)).

    The crop window moves by up to the scene's margin: the camera shifts between photos.
    """
    h, w = image_hw
    m = scene.margin
    oy, ox = (int(v) for v in rng.integers(0, 2 * m + 1, size=2))
    sl = (slice(oy, oy + h), slice(ox, ox + w))
    water_frac = scene.shore[sl]
    if scene.rock is None:
        return scene.water[sl].copy(), water_frac
    rock = scene.rock[sl]
    if scene.water is None:
        return rock.copy(), water_frac
    # Rock just below the water line is wet and darker.
    damp = ndimage.uniform_filter1d(water_frac, 25, axis=0) * (1 - water_frac)
    rock = rock * (1.0 - 0.35 * damp)[..., None]
    return rock * (1 - water_frac)[..., None] + scene.water[sl] * water_frac[..., None], water_frac


def _cast_shadow(bg: np.ndarray, water: np.ndarray, alpha: np.ndarray, light: _Light,
                 scale: float) -> np.ndarray:
    """Darken the background (H, W, 3) around the body ``alpha`` (H, W).

    On rock: a soft shadow thrown away from the light plus a tight contact shadow under the
    belly. On water (``water`` (H, W) = 1) only a faint darkening next to the body.
    """
    off = 6.0 + 14.0 * scale * math.cos(light.elevation)
    dy = -math.sin(light.azimuth) * off * 0.6 + 4.0 * scale
    dx = -math.cos(light.azimuth) * off
    cast = ndimage.shift(alpha, (dy, dx), order=1, mode="constant", cval=0.0)
    cast = ndimage.gaussian_filter(cast, 3.0 + 4.0 * scale, truncate=2.5)
    contact = ndimage.gaussian_filter(ndimage.shift(alpha, (3.0, 0.0), order=0), 2.0, truncate=2.5)
    strength = 0.45 * (1.0 - light.ambient) + 0.1
    dark = np.maximum(strength * cast, 0.55 * contact) * (1.0 - 0.75 * water)
    return bg * (1.0 - dark)[..., None]


# --------------------------------------------------------------------------------------
# Occlusion
# --------------------------------------------------------------------------------------


def _occluder_blob(rng: np.random.Generator, body: np.ndarray, target: float) -> np.ndarray:
    """A boulder outline (bool (H, W)) on the body's edge covering about ``target`` of it."""
    h, w = body.shape
    edge = body & ~ndimage.binary_erosion(body, iterations=2)
    ys, xs = np.nonzero(edge)
    if ys.size == 0:
        return np.zeros_like(body)
    k = int(rng.integers(0, ys.size))
    cy, cx = float(ys[k]), float(xs[k])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rho = np.hypot(yy - cy, xx - cx)
    theta = np.arctan2(yy - cy, xx - cx)
    profile = np.ones_like(theta)
    for kk in range(2, 6):
        profile += rng.uniform(0, 0.2 / kk) * np.cos(kk * theta + rng.uniform(0, 2 * math.pi))
    dist = rho / profile
    area = body.sum()
    lo, hi = 4.0, float(max(h, w))
    for _ in range(14):
        r = (lo + hi) / 2
        if (body & (dist < r)).sum() > target * area:
            hi = r
        else:
            lo = r
    return dist < lo


def _waterline(rng: np.random.Generator, body: np.ndarray, target: float) -> np.ndarray:
    """Soft coverage float32 (H, W) of water below a wavy, near-horizontal line hiding ~``target``."""
    h, w = body.shape
    xs = np.arange(w, dtype=np.float32)
    wave = (xs - w / 2) * math.tan(rng.normal(0, 0.05)) + 2.5 * np.sin(xs / rng.uniform(8, 20))
    ys, bx = np.nonzero(body)
    if ys.size == 0:
        return np.zeros(body.shape, np.float32)
    level = np.quantile(ys - wave[bx], 1.0 - target)
    yy = np.arange(h, dtype=np.float32)[:, None]
    return _smoothstep(-0.8, 0.8, yy - wave[None, :] - level).astype(np.float32)


def _branch(rng: np.random.Generator, body: np.ndarray, target: float) -> np.ndarray:
    """One to three dead branches/reeds crossing the body: soft coverage float32 (H, W)."""
    h, w = body.shape
    ys, xs = np.nonzero(body)
    if ys.size == 0:
        return np.zeros(body.shape, np.float32)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    width_scale = min(h, w) / 384.0  # widths below are for a 384 px high photo
    cover = np.zeros(body.shape, np.float32)
    for _ in range(4):
        img = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            a = rng.uniform(0, math.pi)
            cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
            ln = rng.uniform(0.25, 0.5) * max(h, w)  # half length
            bow = rng.normal(0, 0.12) * ln
            pts = []
            for s in np.linspace(-1, 1, 12):
                px = cx + s * ln * math.cos(a) - bow * (1 - s * s) * math.sin(a)
                py = cy + s * ln * math.sin(a) + bow * (1 - s * s) * math.cos(a)
                pts.append((float(px), float(py)))
            width = max(2, int(round(rng.uniform(4, 13) * width_scale)))
            draw.line(pts, fill=255, width=width)
            for _ in range(int(rng.integers(0, 3))):  # twigs
                s = int(rng.integers(1, 11))
                b = a + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)
                tl = rng.uniform(0.05, 0.15) * max(h, w)
                draw.line([pts[s], (pts[s][0] + tl * math.cos(b), pts[s][1] + tl * math.sin(b))],
                          fill=255, width=max(1, width // 2))
        cover = ndimage.gaussian_filter(np.asarray(img, np.float32) / 255.0, 0.6)
        if (body & (cover > 0.5)).sum() <= max(target, 0.05) * max(body.sum(), 1):
            break
        width_scale *= 0.6
    return cover


def _occlude(rng: np.random.Generator, kind: str, body: np.ndarray, scene: _Scene,
             image_hw: tuple[int, int], occlusion_k: float = 1.0) -> tuple[np.ndarray, float, np.ndarray]:
    """Occluder coverage float32 (H, W) in [0, 1], its opacity and colour float32 (H, W, 3).

    ``kind`` is ``none``, ``boulder``, ``waterline`` or ``branch``; the aimed-for hidden
    fraction of the body is drawn from U(0.03, 0.3), or U(0.12, 0.3) for a swimming seal.
    Water lets the submerged body show through faintly; the masks still count it hidden.
    """
    h, w = image_hw
    colour = np.zeros((h, w, 3), np.float32)
    if kind == "none":
        return np.zeros((h, w), np.float32), 1.0, colour
    target = min(0.6, _scaled(rng.uniform(0.12 if scene.setting == "water" else 0.03, 0.3), 0.0, occlusion_k))
    m = scene.margin
    oy, ox = (int(v) for v in rng.integers(0, 2 * m + 1, size=2))
    if kind == "waterline":
        cover = _waterline(rng, body, target)
        water = scene.water if scene.water is not None else _water(rng, (h + 2 * m, w + 2 * m))
        colour = water[oy:oy + h, ox:ox + w] * 1.0
        edge = np.exp(-(((cover - 0.5) / 0.25) ** 2))  # bright meniscus at the line
        colour = colour + 0.12 * edge[..., None]
        return cover, 0.88, colour
    if kind == "boulder":
        blob = _occluder_blob(rng, body, target)
        cover = ndimage.gaussian_filter(blob.astype(np.float32), 0.7)
        ys, xs = np.nonzero(cover > 0.01)
        if ys.size == 0:
            return cover, 1.0, colour
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        rock = _granite(rng, (int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)))
        dist = ndimage.distance_transform_edt(blob[box]).astype(np.float32)
        dome = ndimage.gaussian_filter(np.sqrt(dist), 2.0)
        gy, gx = np.gradient(dome)
        lit = np.clip(0.75 - 2.5 * gy - 0.8 * gx, 0.35, 1.3)  # lit from the top left
        rim = 1.0 - 0.5 * np.exp(-dist / 2.0)  # dark outline where it meets what is behind
        tone = rng.uniform(0.6, 0.8) if rng.random() < 0.5 else rng.uniform(1.15, 1.35)
        colour[box] = rock * (lit * rim * tone)[..., None]
        return cover, 1.0, colour
    cover = _branch(rng, body, target)
    tone = rng.uniform(0.18, 0.4)
    colour[:] = np.array([tone * 1.1, tone, tone * 0.85], np.float32)
    colour *= (1.0 + 0.15 * _spectral_noise(rng, (h, w), 1.0))[..., None]
    return cover, 1.0, colour


# --------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------


def _camera(rng: np.random.Generator, img: np.ndarray, blur_k: float = 1.0) -> np.ndarray:
    """Defocus blur, sensor noise, quantisation and sometimes JPEG softness: -> uint8 (H, W, 3)."""
    sigma = _scaled(rng.uniform(0.4, 1.0) if rng.random() < 0.7 else rng.uniform(1.0, 2.0), 0.0, blur_k)
    if sigma > 0:
        img = ndimage.gaussian_filter(img, (sigma, sigma, 0), truncate=3.0)
    read = _scaled(rng.uniform(0.004, 0.018), 0.0, blur_k)
    shot = _scaled(rng.uniform(0.008, 0.025), 0.0, blur_k)
    noise = rng.standard_normal(img.shape).astype(np.float32)
    img = img + noise * (read + shot * np.sqrt(np.clip(img, 0.0, 1.0)))
    out = np.clip(np.rint(np.clip(img, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(60, 93)))
        buf.seek(0)
        out = np.asarray(Image.open(buf).convert("RGB"))
    return out


# --------------------------------------------------------------------------------------
# One photo
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Encounter:
    """One encounter's plan: who, where, and the photos taken (roles and ids)."""

    sequence: str
    individual: int
    key: int  # seed key of the encounter within its individual
    photos: tuple["_Photo", ...]
    companion: int | None = None  # a second individual lying beside it (query encounters, ``multi_seal``)


@dataclass(frozen=True)
class _Photo:
    """One planned photo: ids, role (``gallery``/``query``), truth label and seed key."""

    image_id: str
    identity: str
    role: str
    truth: str
    key: int


def _fur_texture(rng: np.random.Generator) -> np.ndarray:
    """Per-photo fine fur texture float32 (Hc, Wc), unit std, streaked along the body.

    Drawn anew for every photo so that only the ring pattern carries the identity.
    """
    fur = ndimage.gaussian_filter(rng.standard_normal(CANON_HW).astype(np.float32), (0.7, 2.2))
    return fur / (fur.std() + 1e-6)


def _scatter(values: np.ndarray, idx: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Put per-pixel ``values`` (N,) or (C, N) at flat ``idx`` of a zero image: (H, W) or (H, W, C)."""
    h, w = image_hw
    if values.ndim == 1:
        out = np.zeros(h * w, np.float32)
        out[idx] = values
        return out.reshape(h, w)
    out = np.zeros((values.shape[0], h * w), np.float32)
    out[:, idx] = values
    return out.reshape(-1, h, w).transpose(1, 2, 0)


def _photo_landmarks(landmarks: np.ndarray, coords: np.ndarray, visible: np.ndarray) -> dict[str, list | None]:
    """Where each canonical landmark (K, 2) lands in the photo: the pixel whose canonical
    coordinates (``coords`` (2, H, W)) are nearest, as [x, y]; None when it is out of frame or
    not on the ``visible`` body."""
    out: dict[str, list | None] = {}
    for name, (ly, lx) in zip(LANDMARKS, landmarks):
        d2 = (coords[0] - ly) ** 2 + (coords[1] - lx) ** 2
        y, x = np.unravel_index(int(np.argmin(d2)), d2.shape)
        seen = d2[y, x] <= _LANDMARK_TOLERANCE ** 2 and visible[y, x]
        out[name] = [float(x), float(y)] if seen else None
    return out


@dataclass(frozen=True)
class _Companion:
    """A second seal in an encounter's photos: who, its rough pose, and its own random stream."""

    individual: _Individual
    pose_base: dict[str, float]
    rng: np.random.Generator


@dataclass(frozen=True)
class _SealInPhoto:
    """One seal's masks in a rendered photo: body and ring pattern uint8 (H, W) 0/255 (visible
    pixels only), and its landmarks {name: [x, y] px or None}."""

    body: np.ndarray
    pattern: np.ndarray
    landmarks: dict[str, list | None]


def _seal_layer(rng: np.random.Generator, ind: _Individual, pose: _Pose, light: _Light,
                image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One seal drawn at ``pose``: (alpha (H, W), ring (H, W), shaded rgb (H, W, 3), canonical coords (2, H, W))."""
    coords = _inverse_map(rng, pose, image_hw)
    vals, idx = _sample_individual(ind, coords, pose, _fur_texture(rng))
    alpha = _scatter(np.clip(vals[3], 0.0, 1.0), idx, image_hw)
    ring = _scatter(vals[4], idx, image_hw)
    seal = _scatter(_shade_seal(rng, vals, idx, pose, light, image_hw), idx, image_hw)
    return alpha, ring, seal, coords


def _render_photo(rng: np.random.Generator, ind: _Individual, scene: _Scene,
                  pose_base: dict[str, float], light_base: _Light, occlusion: str,
                  image_hw: tuple[int, int], config: SealDatasetConfig = SealDatasetConfig(),
                  companion: _Companion | None = None) -> tuple[np.ndarray, list[_SealInPhoto]]:
    """Render one photo: rgb uint8 (H, W, 3) and, per seal (the photographed one first, then the
    ``companion`` lying behind it when there is one), its visible masks and landmarks.

    Masks are 0/255: the visible (in-frame, unoccluded) body, and its visible ring pixels.
    """
    pose = _photo_pose(rng, pose_base, image_hw, config.pose_variation)
    light = _photo_light(rng, light_base)
    alpha, ring, seal, coords = _seal_layer(rng, ind, pose, light, image_hw)
    behind = None
    if companion is not None:
        c_pose = _photo_pose(companion.rng, companion.pose_base, image_hw, config.pose_variation)
        behind = _seal_layer(companion.rng, companion.individual, c_pose, light, image_hw)

    bg, water = _background(rng, scene, image_hw)
    shadow_alpha = alpha if behind is None else np.maximum(alpha, behind[0])
    bg = _cast_shadow(bg, water, shadow_alpha, light, pose.scale)
    if behind is not None:
        bg = bg * (1.0 - behind[0][..., None]) + behind[2] * behind[0][..., None]
    img = bg * (1.0 - alpha[..., None]) + seal * alpha[..., None]

    body = alpha > 0.5
    bodies = [(body, ring, coords, ind)]
    if behind is not None:
        bodies.append(((behind[0] > 0.5) & ~body, behind[1], behind[3], companion.individual))
    cover, opacity, occ_colour = _occlude(rng, occlusion, body if behind is None else body | bodies[1][0], scene,
                                          image_hw, config.occlusion)
    shown = (cover * opacity)[..., None]
    img = img * (1.0 - shown) + occ_colour * shown

    rgb = _camera(rng, _global_light(img, light), config.blur)
    seals = []
    for b, r, c, who in bodies:
        visible = b & (cover < 0.5)
        seals.append(_SealInPhoto(visible.astype(np.uint8) * 255, (visible & (r > 0.5)).astype(np.uint8) * 255,
                                  _photo_landmarks(who.landmarks, c, visible)))
    return rgb, seals


# --------------------------------------------------------------------------------------
# Plan, writer, public entry point
# --------------------------------------------------------------------------------------

_KEY_INDIVIDUAL, _KEY_ENCOUNTER, _KEY_PHOTO, _KEY_PLAN, _KEY_GROUP = 1, 2, 3, 4, 5
_GROUP_SCALE = 0.6  # two seals in a photo are drawn this much smaller, one on each side


def _identity(i: int) -> str:
    """Name of individual ``i``; unknown individuals get names too, used only internally."""
    return f"seal_{i:03d}"


def _plan(config: SealDatasetConfig) -> list[_Encounter]:
    """Who is photographed in which encounter, and the ids and labels of every photo.

    Encounter numbers and query ids are shuffled so that neither reveals the individual.
    """
    rng = _child_rng(config, _KEY_PLAN)
    raw: list[tuple[int, int, list[tuple[str, str, str, int]]]] = []  # (individual, key, photos)
    for i in range(config.n_known):
        name = _identity(i)
        g = config.gallery_per_individual
        n_enc = 1 if g < 2 else int(rng.integers(1, 3))
        sizes = [g - g // 2, g // 2] if n_enc == 2 else [g]
        j = 0
        for e, size in enumerate(sizes):
            photos = []
            for _ in range(size):
                photos.append((f"g_{name}_{j + 1}", "gallery", name, j))
                j += 1
            raw.append((i, e, photos))
        if config.queries_per_known:
            raw.append((i, 100, [("", "query", name, 1000 + q)
                                 for q in range(config.queries_per_known)]))
    for u in range(config.n_unknown):
        i = config.n_known + u
        if config.queries_per_unknown:
            raw.append((i, 100, [("", "query", NEW_INDIVIDUAL, 1000 + q)
                                 for q in range(config.queries_per_unknown)]))

    seq_numbers = rng.permutation(len(raw))
    n_queries = sum(1 for _, _, ph in raw for p in ph if p[1] == "query")
    query_numbers = iter(rng.permutation(n_queries).tolist())
    plan = []
    for (i, key, photos), seq in zip(raw, seq_numbers):
        built = []
        for image_id, role, truth, pkey in photos:
            if role == "query":
                image_id = f"q_{next(query_numbers):04d}"
            built.append(_Photo(image_id=image_id, identity=_identity(i), role=role,
                                truth=truth, key=pkey))
        plan.append(_Encounter(sequence=f"enc_{int(seq):04d}", individual=i, key=key,
                               photos=tuple(built)))
    return _with_companions(plan, config)


def _with_companions(plan: list[_Encounter], config: SealDatasetConfig) -> list[_Encounter]:
    """Give ``multi_seal`` of the query encounters a second seal (drawn from a stream of its
    own, so a data set without them is unchanged)."""
    everyone = config.n_known + config.n_unknown
    if config.multi_seal <= 0 or everyone < 2:
        return plan
    rng = _child_rng(config, _KEY_GROUP)
    out = []
    for enc in plan:
        draw, other = rng.uniform(), int(rng.integers(everyone - 1))
        if enc.key == 100 and draw < config.multi_seal:
            enc = dataclasses.replace(enc, companion=other + (other >= enc.individual))
        out.append(enc)
    return out


def _companion_rows(config: SealDatasetConfig, enc: _Encounter, photo: _Photo) -> tuple[str, str, str]:
    """(image id, truth, sequence) of the companion seal's query row for ``photo``."""
    truth = _identity(enc.companion) if enc.companion < config.n_known else NEW_INDIVIDUAL
    return f"{photo.image_id}b", truth, f"{enc.sequence}b"


def _group_poses(config: SealDatasetConfig, enc: _Encounter, pose_base: dict[str, float]
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """Rough poses of a two-seal encounter: both smaller, the photographed seal on the left."""
    crng = _child_rng(config, _KEY_GROUP, enc.individual, enc.key)
    other = _encounter_pose(crng, config.pose_variation)
    main = {**pose_base, "scale": pose_base["scale"] * _GROUP_SCALE, "fx": -0.9}
    other.update(scale=other["scale"] * _GROUP_SCALE, fx=0.9, fy=pose_base["fy"])
    return main, other


def _occlusion_options(setting: str, occlusion_k: float) -> tuple[tuple[str, float], ...]:
    """The setting's occlusion kinds, the occluders' share scaled by ``occlusion_k`` (a water
    setting always has its waterline)."""
    options = _OCCLUSIONS[setting]
    if occlusion_k == 1.0 or setting == "water":
        return options
    return tuple((kind, p if kind == "none" else p * occlusion_k) for kind, p in options)


def _choose(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    """Draw one name from ``(name, probability)`` pairs."""
    names = [o[0] for o in options]
    p = np.array([o[1] for o in options], np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _save_png(path: Path, arr: np.ndarray) -> None:
    """Write uint8 (H, W) or (H, W, 3) as PNG; Pillow adds no timestamp, so bytes are stable.

    Noisy photos barely compress, so they get the fastest zlib level; masks the default.
    """
    Image.fromarray(arr).save(path, format="PNG", compress_level=1 if arr.ndim == 3 else 6)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    """Write ``rows`` under a header of ``columns`` (paths in rows are relative to ``path``)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _generate_into(root: Path, config: SealDatasetConfig) -> None:
    """Render every photo of ``config`` into the empty folder ``root``; dataset.json last."""
    for sub in ("images", "masks", "patterns"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    image_hw = (int(config.image_size[0]), int(config.image_size[1]))
    gallery_rows: list[dict[str, str]] = []
    query_rows: list[dict[str, str]] = []
    cached: tuple[int, _Individual] | None = None
    for enc in _plan(config):
        if cached is None or cached[0] != enc.individual:
            cached = (enc.individual, _make_individual(_child_rng(config, _KEY_INDIVIDUAL, enc.individual)))
        ind = cached[1]
        erng = _child_rng(config, _KEY_ENCOUNTER, enc.individual, enc.key)
        setting = _SETTINGS[int(erng.choice(len(_SETTINGS), p=_SETTING_P))]
        pose_base = _encounter_pose(erng, config.pose_variation)
        companion_base, companion_ind = None, None
        if enc.companion is not None:
            pose_base, companion_base = _group_poses(config, enc, pose_base)
            companion_ind = _make_individual(_child_rng(config, _KEY_INDIVIDUAL, enc.companion))
        scene = _encounter_scene(erng, setting, image_hw, _body_top(pose_base, image_hw))
        light_base = _encounter_light(erng)
        for photo in enc.photos:
            prng = _child_rng(config, _KEY_PHOTO, enc.individual, photo.key)
            occlusion = _choose(prng, _occlusion_options(setting, config.occlusion))
            companion = None if companion_ind is None else _Companion(
                companion_ind, companion_base, _child_rng(config, _KEY_GROUP, enc.individual, enc.key, photo.key))
            rgb, seals = _render_photo(prng, ind, scene, pose_base, light_base, occlusion, image_hw, config, companion)
            _save_png(root / f"images/{photo.image_id}.png", rgb)
            row = _seal_row(root, photo.image_id, photo.image_id, seals[0], enc.sequence)
            if photo.role == "gallery":
                gallery_rows.append({**row, "identity": photo.identity})
            else:
                query_rows.append({**row, "truth": photo.truth, "individual": photo.identity})
            if len(seals) > 1:
                image_id, truth, sequence = _companion_rows(config, enc, photo)
                query_rows.append({**_seal_row(root, image_id, photo.image_id, seals[1], sequence), "truth": truth,
                                   "individual": _identity(enc.companion)})
    query_rows.sort(key=lambda r: r["image_id"])
    _write_csv(root / "gallery.csv", GALLERY_COLUMNS, gallery_rows)
    _write_csv(root / "query.csv", QUERY_COLUMNS, query_rows)
    meta = {"generator": "reid_engine.synthetic.seals", "version": GENERATOR_VERSION,
            "config": config.to_json()}
    (root / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")


def _seal_row(root: Path, image_id: str, photo_id: str, seal: _SealInPhoto, sequence: str) -> dict[str, str]:
    """Write one seal's masks; its manifest row (the photo ``images/PHOTO_ID.png`` is shared by
    the seals in it)."""
    rel = {"path": f"images/{photo_id}.png", "mask_path": f"masks/{image_id}.png",
           "pattern_path": f"patterns/{image_id}.png"}
    _save_png(root / rel["mask_path"], seal.body)
    _save_png(root / rel["pattern_path"], seal.pattern)
    return {"image_id": image_id, **rel, "sequence": sequence, "species": SPECIES, "orientation": ORIENTATION,
            "keypoints": json.dumps(seal.landmarks)}


def _is_complete(root: Path, config: SealDatasetConfig) -> bool:
    """True when ``root`` holds a finished data set of this config and generator version."""
    try:
        meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
        if meta.get("version") != GENERATOR_VERSION:
            return False
        if SealDatasetConfig.from_json(meta["config"]) != config:
            return False
        for name in ("gallery.csv", "query.csv"):
            with open(root / name, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    for col in ("path", "mask_path", "pattern_path"):
                        if not (root / row[col]).is_file():
                            return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _dataset(root: Path, config: SealDatasetConfig) -> SyntheticDataset:
    """The record describing the data set in ``root``."""
    return SyntheticDataset(root=root, gallery_csv=root / "gallery.csv",
                            query_csv=root / "query.csv", config=config)


_OWN_ENTRIES = {"images", "masks", "patterns", "gallery.csv", "query.csv", "dataset.json"}


def generate_seal_dataset(out_dir: Path, config: SealDatasetConfig = SealDatasetConfig()) -> SyntheticDataset:
    """Build (or reuse) the synthetic ringed-seal data set of ``config`` in ``out_dir``.

    If ``out_dir`` already holds a complete data set of an equal config and generator
    version it is returned untouched. Otherwise the data set is rendered into a temporary
    folder next to ``out_dir`` and renamed into place, so an interrupted run never leaves
    a half data set that looks complete. An existing ``out_dir`` is replaced only when it
    is empty or holds nothing but data set files; anything else raises FileExistsError.
    """
    config.validate()
    out_dir = Path(out_dir)
    if _is_complete(out_dir, config):
        return _dataset(out_dir, config)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a folder")
        foreign = {p.name for p in out_dir.iterdir()} - _OWN_ENTRIES
        if foreign:
            raise FileExistsError(
                f"{out_dir} holds files that are not a synthetic seal data set "
                f"({', '.join(sorted(foreign)[:5])}); refusing to overwrite it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it owner-only; the data set is ordinary files
    try:
        _generate_into(tmp, config)
        if _is_complete(out_dir, config):  # another process finished first
            shutil.rmtree(tmp)
            return _dataset(out_dir, config)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "data")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _dataset(out_dir, config)
