"""``hessaff-rootsift`` as it was at an earlier commit (kornia's BlobHessian and that commit's
``PatchRootSift``) against today's, alternating on the same nyala-dev photos.

    python benchmarks/experiments/hessaff_before_after.py [--rev 41870f8] [--threads 1] [--photos 24]

The earlier ``_patch_sift.py`` is read with ``git show REV:plugins/extractors/_patch_sift.py``;
photos, masks and settings are ``benchmarks/hessaff_speed.py``'s. Prints median seconds per photo
of each and the largest descriptor difference (keypoint counts must agree). Not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import hessaff_speed as H  # noqa: E402


def earlier_patch_sift(rev: str):
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:plugins/extractors/_patch_sift.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "earlier_patch_sift.py"
    path.write_text(source.replace("from ._gradients import diff_gradient\n", ""))
    spec = importlib.util.spec_from_file_location("earlier_patch_sift", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PatchRootSift


def main() -> None:
    import kornia.feature as KF

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="41870f8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--photos", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = H.photos(args.photos)
    before = H.HessAffRootSift(H.NYALA, "cpu")
    before.detector.resp = KF.BlobHessian()
    before.descriptor.descriptor = earlier_patch_sift(args.rev)(H.NYALA.patch_size).eval()
    variants = {args.rev: before, "now": H.HessAffRootSift(H.NYALA, "cpu")}
    for extractor in variants.values():
        extractor.extract(images[0])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    worst = 0.0
    for image in images[1:]:
        out = {}
        for name, extractor in variants.items():
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                out[name] = extractor.extract(image)
                runs.append(time.perf_counter() - t)
            seconds[name].append(min(runs))
        a, b = out.values()
        if a.kpts.shape != b.kpts.shape:
            raise SystemExit(f"{image.record.image_id}: {len(a)} against {len(b)} regions")
        worst = max(worst, float(abs(a.desc - b.desc).max(initial=0)))
    print(json.dumps({"threads": args.threads, "photos_timed": len(images) - 1,
                      "median_s_per_photo": {k: round(statistics.median(v), 4) for k, v in seconds.items()},
                      "max_descriptor_difference": worst, "command": "python benchmarks/experiments/"
                      f"hessaff_before_after.py --rev {args.rev} --threads {args.threads} --photos {args.photos}"}))


if __name__ == "__main__":
    main()
