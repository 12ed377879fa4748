"""``hessaff-rootsift`` as the engine runs it against kornia's own modules, side by side:

- ``kornia``: kornia's detector (``ScaleSpaceDetector``, ``BlobHessian``, ``ConvQuadInterp3d``), SIFT
  descriptor, affine shape and orientation modules, each of the last three sampling its patches from a
  pyramid it builds itself;
- ``kornia-steps``: the same with the engine's response and descriptor (``plugins/extractors/_gradients.py``,
  ``_patch_sift.py``): the engine until stop 37, but for the float rounding of its Hessian (then a
  depthwise convolution, now sums of shifted slices);
- ``engine``: as shipped: ``_hessian_detector.py``, every patch from one pyramid (``_patch_pyramid.py``,
  ``_region_steps.py``).

    python benchmarks/hessaff_speed.py [--photos 24] [--threads 1] [--repeats 3]

The photos are every k-th nyala-dev photo, loaded as the engine loads them, with an elliptic mask
over the middle third of each (nyala-dev's IS-Net masks cover a third of the photo on average), and
the shipped ``nyala`` profile's extractor settings (512 px, 1,024 regions, 19-px shape and
orientation patches). The variants run in one process, alternating photo by photo; the first
photo is warm-up. Prints and writes benchmarks/results/hessaff-speed-<threads>-threads.json:
median seconds per photo of each, and how far each one's regions and descriptors are from the engine's
(:func:`compare`).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from reid_engine.inputs.images import read_image
from reid_engine.plugins.extractors._gradients import BlobHessian
from reid_engine.plugins.extractors.hessaff_rootsift import HessAffRootSift, HessAffRootSiftConfig
from reid_engine.records import ImageRecord, LoadedImage

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nyala-dev"
RESULTS = REPO / "benchmarks" / "results"
NYALA = HessAffRootSiftConfig(resize=512, max_keypoints=1024, shape_patch_size=19, orientation_patch_size=19)


def photos(n: int) -> list[LoadedImage]:
    rows = list(csv.DictReader(open(DATA / "metadata.csv")))
    out = []
    for row in rows[:: max(1, len(rows) // n)][:n]:
        image = read_image(ImageRecord(image_id=row["image_id"], path=DATA / row["path"]))
        h, w = image.rgb.shape[:2]
        y, x = np.ogrid[:h, :w]
        mask = ((x - w / 2) / (w / 3)) ** 2 + ((y - h / 2) / (h / 3)) ** 2 <= 1.0  # ~35 % of the photo
        out.append(LoadedImage(image.record, image.rgb, mask, image.content_hash, image.original_hw))
    return out


class KorniaDetector:
    """kornia's ScaleSpaceDetector with the ``detect(grey, mask, n)`` of the engine's HessianDetector."""

    def __init__(self, kornia_response: bool) -> None:
        import kornia.feature as KF
        from kornia.geometry import ConvQuadInterp3d, ScalePyramid

        self.module = KF.ScaleSpaceDetector(
            NYALA.max_keypoints, mr_size=NYALA.mr_size, minima_are_also_good=True,
            resp_module=KF.BlobHessian() if kornia_response else BlobHessian(),
            scale_pyr_module=ScalePyramid(3, 1.6, NYALA.patch_size, double_image=False),
            subpix_module=ConvQuadInterp3d(10)).eval()

    def detect(self, grey: torch.Tensor, mask: torch.Tensor | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        responses, lafs = self.module.detect(grey, n, mask)
        return responses[0], lafs[0]


class KorniaSteps(HessAffRootSift):
    """The extractor with kornia's detector, shape, orientation and descriptor modules, the last three each
    sampling patches from a pyramid it builds itself; ``kornia_response`` also kornia's Hessian response and
    SIFTDescriptor (else the engine's, as the engine ran until stop 37)."""

    def __init__(self, kornia_response: bool) -> None:
        import kornia.feature as KF

        super().__init__(NYALA, "cpu")
        self.detector = KorniaDetector(kornia_response)
        if kornia_response:
            self.descriptor = KF.SIFTDescriptor(NYALA.patch_size, rootsift=True).eval()
        self.kornia_shape = KF.LAFAffineShapeEstimator(NYALA.shape_patch_size)
        self.kornia_orientation = KF.LAFOrienter(NYALA.orientation_patch_size)
        self.kornia_descriptor = KF.LAFDescriptor(self.descriptor, patch_size=NYALA.patch_size)

    def describe(self, grey: torch.Tensor, lafs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lafs = self.kornia_orientation(self.kornia_shape(lafs[None], grey), grey)
        return lafs[0], self.kornia_descriptor(grey, lafs)[0]


def compare(a, b, worst: dict) -> None:
    """Adds to ``worst`` how far ``a``'s regions are from ``b``'s: each region of ``a`` is paired with the
    region of ``b`` nearest its centre (a near-tie of responses may order them differently); a centre more
    than 0.01 px from every one of ``b``'s counts as unmatched, and for the others the largest difference of
    frame entries (px) and of descriptor components is kept."""
    if len(a.kpts) == 0 or len(b.kpts) == 0:
        worst["keypoints_unmatched"] += abs(len(a.kpts) - len(b.kpts))
        return
    distance = np.linalg.norm(a.kpts[:, None] - b.kpts[None], axis=2)  # (Na, Nb)
    nearest = distance.argmin(1)
    paired = distance[np.arange(len(a.kpts)), nearest] <= 0.01
    worst["keypoints_compared"] += len(a.kpts)
    worst["keypoints_unmatched"] += int((~paired).sum()) + max(0, len(b.kpts) - len(a.kpts))
    if paired.any():
        frames = np.abs(a.lafs[paired] - b.lafs[nearest[paired]]).max()
        descriptors = np.abs(a.desc[paired] - b.desc[nearest[paired]]).max()
        worst["max_frame_px"] = max(worst["max_frame_px"], float(frames))
        worst["max_descriptor"] = max(worst["max_descriptor"], float(descriptors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = photos(args.photos)
    variants = {"kornia": KorniaSteps(kornia_response=True), "kornia-steps": KorniaSteps(kornia_response=False),
                "engine": HessAffRootSift(NYALA, "cpu")}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    others = [name for name in variants if name != "engine"]
    worst = {name: {"keypoints_unmatched": 0, "keypoints_compared": 0, "max_frame_px": 0.0, "max_descriptor": 0.0}
             for name in others}
    for name, extractor in variants.items():
        extractor.extract(images[0])  # warm-up
    for image in images[1:]:
        features = {}
        for name, extractor in variants.items():
            runs = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                features[name] = extractor.extract(image)
                runs.append(time.perf_counter() - t)
            seconds[name].append(min(runs))
        for name in others:
            compare(features[name], features["engine"], worst[name])
    record = {
        "photos_timed": len(images) - 1, "threads": args.threads, "repeats": args.repeats, "config": vars(NYALA),
        "s_per_photo_median": {name: statistics.median(s) for name, s in seconds.items()},
        "s_per_photo_mean": {name: statistics.mean(s) for name, s in seconds.items()},
        "difference_from_engine": worst,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": len(__import__("os").sched_getaffinity(0))},
        "command": f"python benchmarks/hessaff_speed.py --photos {args.photos} --threads {args.threads} "
                   f"--repeats {args.repeats}",
    }
    print(json.dumps(record, indent=1))
    (RESULTS / f"hessaff-speed-{args.threads}-threads.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
