"""``hessaff-rootsift`` as the engine runs it against kornia's own modules, side by side:

- ``kornia``: kornia's Hessian response, SIFT descriptor, affine shape and orientation modules, each of
  the last three sampling its patches from a pyramid it builds itself;
- ``kornia-steps``: the engine's response and descriptor (``plugins/extractors/_gradients.py``,
  ``_patch_sift.py``) with kornia's shape, orientation and patch sampling (the engine until stop 37);
- ``engine``: as shipped, every patch from one pyramid (``_patch_pyramid.py``, ``_region_steps.py``).

    python benchmarks/hessaff_speed.py [--photos 24] [--threads 1] [--repeats 3]

The photos are every k-th nyala-dev photo, loaded as the engine loads them, with an elliptic mask
over the middle third of each (nyala-dev's IS-Net masks cover a third of the photo on average), and
the shipped ``nyala`` profile's extractor settings (512 px, 1,024 regions, 19-px shape and
orientation patches). The variants run in one process, alternating photo by photo; the first
photo is warm-up. Prints and writes benchmarks/results/hessaff-speed-<threads>-threads.json:
median seconds per photo of each, and how far each one's regions and descriptors are from the engine's.
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


class KorniaSteps(HessAffRootSift):
    """The extractor with kornia's shape, orientation and descriptor modules, each sampling patches from a
    pyramid it builds itself (the engine before 3 December 2026, stop 37); ``descriptor`` None = kornia's
    SIFTDescriptor, else the engine's PatchRootSift."""

    def __init__(self, kornia_response: bool) -> None:
        import kornia.feature as KF

        super().__init__(NYALA, "cpu")
        if kornia_response:
            self.detector.resp = KF.BlobHessian()
            self.descriptor = KF.SIFTDescriptor(NYALA.patch_size, rootsift=True).eval()
        self.kornia_shape = KF.LAFAffineShapeEstimator(NYALA.shape_patch_size)
        self.kornia_orientation = KF.LAFOrienter(NYALA.orientation_patch_size)
        self.kornia_descriptor = KF.LAFDescriptor(self.descriptor, patch_size=NYALA.patch_size)

    def describe(self, grey: torch.Tensor, lafs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lafs = self.kornia_orientation(self.kornia_shape(lafs[None], grey), grey)
        return lafs[0], self.kornia_descriptor(grey, lafs)[0]


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
    worst = {name: {"keypoints_differ": 0, "max_keypoint_px": 0.0, "max_descriptor": 0.0} for name in others}
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
            a, b = features[name], features["engine"]
            if a.kpts.shape != b.kpts.shape:
                worst[name]["keypoints_differ"] += 1
                continue
            worst[name]["max_keypoint_px"] = max(worst[name]["max_keypoint_px"],
                                                 float(np.abs(a.kpts - b.kpts).max(initial=0)))
            worst[name]["max_descriptor"] = max(worst[name]["max_descriptor"],
                                                float(np.abs(a.desc - b.desc).max(initial=0)))
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
