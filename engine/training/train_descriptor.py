"""``reid-engine train descriptor``: self-supervised HardNet on a user's own photos.

1. photos (folder or manifest CSV; with ``--split`` only its gallery rows) are split by photo
   into training and held-out validation photos (``val_share``);
2. the HesAffNet detector (``hesaffnet-hardnet`` with RootSIFT, i.e. AffNet + OriNet; without
   those weights the weight-free ``hessaff-rootsift`` regions) finds regions in every photo;
3. each epoch draws ``pairs`` fresh (photo, randomly warped photo) patch pairs
   (:mod:`.descriptor`) and trains ``kornia.feature.HardNet`` with the hardest-in-batch loss
   (:mod:`.hardnet_loss`): Adam (default: far fewer steps on a small photo set) or the HardNet
   reference's SGD (lr 0.1, momentum 0.9, dampening 0.9, weight decay 1e-4), the learning
   rate decaying linearly to zero over the run as in the paper;
4. after each epoch FPR95 and top-1 retrieval on fixed held-out pairs are measured, beside the
   untrained network and RootSIFT on the same patches, and the checkpoint is written atomically,
   so ``--resume`` continues a killed run from its last finished epoch. Detected regions are
   kept beside it (``OUT.regions``), so a resumed or repeated run does not detect again.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from reid_engine.errors import ImageDecodeError, ManifestError, ReidError, UsageError
from reid_engine.inputs.images import read_image
from reid_engine.inputs.manifests import apply_split, load_manifest
from reid_engine.records import ImageRecord
from reid_engine.registry import config_hash
from reid_engine.training.checkpoint import (
    CheckpointError,
    DescriptorCheckpoint,
    atomic_save,
    load_hardnet,
    read_checkpoint,
    write_checkpoint,
)
from reid_engine.training.descriptor import (
    PATCH_SIZE,
    PatchPairs,
    PhotoRegions,
    WarpConfig,
    photo_regions,
    sample_pairs,
)
from reid_engine.training.hardnet_loss import hardnet_loss, pair_metrics
from reid_engine.weights import weight_path

# below these there is no meaningful hardest-in-batch training or validation
MIN_TRAIN_REGIONS = 64
MIN_VAL_PAIRS = 16
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}
# options a resumed run must share with the run it continues (``epochs`` may grow)
RESUME_KEYS = ("pairs", "batch_size", "optimizer", "lr", "val_share", "val_pairs", "seed", "max_photos",
               "resize", "max_keypoints", "upright")


@dataclass(frozen=True)
class TrainDescriptorOptions:
    """What ``reid-engine train descriptor`` was asked to do (see the CLI help for each)."""

    photos: Path
    out: Path
    split: Path | None = None
    epochs: int = 5
    pairs: int = 20000
    batch_size: int = 512
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float | None = None
    val_share: float = 0.2
    val_pairs: int = 2000
    resume: bool = False
    device: str = "cpu"
    seed: int = 0
    init: Path | None = None
    from_scratch: bool = False
    max_photos: int = 0
    resize: int = 640
    max_keypoints: int = 480
    upright: bool = False
    warp: WarpConfig = field(default_factory=WarpConfig)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def resume_view(self) -> dict:
        view = {k: getattr(self, k) for k in RESUME_KEYS}
        view["lr"] = self.learning_rate
        return view


@dataclass
class TrainDescriptorResult:
    out: Path
    history: list[dict]
    baselines: dict[str, dict]
    detector: str
    init: str
    train_photos: int
    val_photos: int
    val_pairs: int
    skipped: list[str]
    notices: list[str]


def _check(options: TrainDescriptorOptions) -> None:
    if options.epochs < 1:
        raise UsageError(f"--epochs {options.epochs}: train at least 1 epoch")
    if options.batch_size < 8:
        raise UsageError(f"--batch-size {options.batch_size}: hardest-in-batch mining needs at least 8 pairs a batch")
    if options.pairs < options.batch_size:
        raise UsageError(f"--pairs {options.pairs} is smaller than --batch-size {options.batch_size}; "
                         "draw at least one batch per epoch")
    if not 0.0 < options.val_share < 1.0:
        raise UsageError(f"--val-share {options.val_share}: give the share of photos held out, between 0 and 1")
    if options.val_pairs < MIN_VAL_PAIRS:
        raise UsageError(f"--val-pairs {options.val_pairs}: measure on at least {MIN_VAL_PAIRS} held-out pairs")
    if options.optimizer not in DEFAULT_LR:
        raise UsageError(f"--optimizer {options.optimizer!r}: choose sgd or adam")
    if options.init is not None and options.from_scratch:
        raise UsageError("--init and --from-scratch contradict each other; pass one")
    if options.out.is_dir():
        raise UsageError(f"--out {options.out}: is a folder; name the checkpoint file, e.g. {options.out / 'hardnet.pth'}")


def _records(options: TrainDescriptorOptions, table) -> list[ImageRecord]:
    """The photos to use: the manifest (only its gallery rows with ``--split``), image-id order."""

    if not Path(options.photos).exists():
        raise UsageError(f"{options.photos}: no such file or folder; PHOTOS is a folder of photos or a manifest CSV")
    if options.split is not None:
        gallery, _ = apply_split(load_manifest(options.photos, "gallery", table), options.split)
        records = list(gallery.records)
    else:
        try:
            records = list(load_manifest(options.photos, "query", table).records)
        except ManifestError as exc:
            if not options.photos.is_dir():
                raise
            # the folder adapter speaks of query photos; here any photos will do
            raise UsageError(str(exc).split("; ")[0] + "; pass a folder of photos or a manifest CSV") from None
    records.sort(key=lambda r: r.image_id)
    if options.max_photos and len(records) > options.max_photos:
        rng = np.random.default_rng([options.seed, 17])
        keep = sorted(rng.choice(len(records), options.max_photos, replace=False))
        records = [records[i] for i in keep]
    if len(records) < 2:
        raise UsageError(f"{options.photos}: {len(records)} photo(s); training needs at least 2 "
                         "(some to train on, some held out to measure on)")
    return records


def _split_photos(ids: list[str], share: float, seed: int) -> set[str]:
    """Held-out photo ids: a seeded share of the photos, at least one, never all."""
    n_val = min(len(ids) - 1, max(1, round(share * len(ids))))
    order = np.random.default_rng([seed, 23]).permutation(len(ids))
    return {ids[i] for i in order[:n_val]}


def _detector(options: TrainDescriptorOptions, table, device: str) -> tuple[object, str, str, list[str]]:
    """The region detector: HesAffNet (AffNet + OriNet) when its weights are there, else Baumberg.

    Returns (extractor, what it is in words, its cache id, notices).
    """

    common = {"resize": options.resize, "max_keypoints": options.max_keypoints, "upright": options.upright}
    try:
        spec = table.get("extractor", "hesaffnet-hardnet")
        config = spec.make_config({**common, "descriptor": "rootsift"})
        obj = spec.build(config, device)
        return obj, "hesaffnet (Hessian + AffNet + OriNet)", f"{spec.name}/{spec.version}/{config_hash(config)}", []
    except (ReidError, ImportError, KeyError, LookupError) as exc:
        reason = str(exc).split(";")[0]
    spec = table.get("extractor", "hessaff-rootsift")
    config = spec.make_config({**common, "mr_size": 9.35})
    obj = spec.build(config, device)
    notice = (f"HesAffNet weights unavailable ({reason}); training on weight-free Hessian-affine regions "
              "(Baumberg shape, dominant-gradient orientation). `reid-engine weights import` AffNet.pth and "
              "OriNet.pth to train on the regions hesaffnet-hardnet describes")
    return (obj, "hessaff (Hessian + Baumberg + dominant orientation)", f"{spec.name}/{spec.version}/{config_hash(config)}",
            [notice])


def regions_path(out: Path) -> Path:
    """Where the detected regions of a run are kept (beside its checkpoint), for --resume and re-runs."""
    return out.with_name(out.name + ".regions")


def _load_regions(path: Path, detector_id: str) -> dict[str, torch.Tensor]:
    """content hash → LAFs (N, 2, 3) in decoded-photo pixels, from an earlier run of the same detector."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - absent or damaged: detect again
        return {}
    if not isinstance(stored, dict) or stored.get("detector") != detector_id or not isinstance(stored.get("lafs"), dict):
        return {}
    return dict(stored["lafs"])


def _detect(records: list[ImageRecord], detector, detector_id: str, resize: int, cache: Path,
            log: Callable[[str], None]) -> tuple[list[PhotoRegions], list[str], str]:
    """Regions of every readable photo; unreadable ones are listed, not fatal. Also a digest of the photos.

    Detections are kept in ``cache`` (every 50 new photos and at the end), so a killed or
    repeated run detects only what it has not seen.
    """

    known = _load_regions(cache, detector_id)
    if known:
        log(f"regions: reusing the detections of up to {len(known)} photos from {cache}")
    photos: list[PhotoRegions] = []
    skipped: list[str] = []
    digest = hashlib.sha256()
    start, new = time.time(), 0
    for n, record in enumerate(records, 1):
        try:
            image = read_image(record)
        except ImageDecodeError as exc:
            skipped.append(str(exc))
            continue
        digest.update(f"{record.image_id}\0{image.content_hash}\n".encode())
        lafs = known.get(image.content_hash)
        if lafs is None:
            features = detector.extract(image)
            if features.lafs is None:
                raise ReidError("the region detector returned no affine frames; it cannot be used for training")
            lafs = known[image.content_hash] = torch.from_numpy(np.asarray(features.lafs, np.float32))
            new += 1
            if new % 50 == 0:
                atomic_save({"detector": detector_id, "lafs": known}, cache)
        photos.append(photo_regions(image, lafs.numpy(), resize))
        if n % 25 == 0 or n == len(records):
            log(f"regions: {n}/{len(records)} photos, {sum(p.lafs.shape[0] for p in photos)} regions "
                f"({time.time() - start:.0f} s)")
    if new:
        atomic_save({"detector": detector_id, "lafs": known}, cache)
    return photos, skipped, digest.hexdigest()


def _as_input(patches: torch.Tensor, device: str) -> torch.Tensor:
    """uint8 (B, 32, 32) → float (B, 1, 32, 32) in [0, 1] on ``device``."""
    return patches.to(device, non_blocking=True).float().div_(255.0)[:, None]


@torch.no_grad()
def describe(net: torch.nn.Module, patches: torch.Tensor, device: str, batch: int = 1024) -> torch.Tensor:
    """Descriptors (P, 128) of uint8 patches (P, 32, 32), network in eval mode."""
    was_training = net.training
    net.eval()
    out = [net(_as_input(patches[i:i + batch], device)).float().cpu() for i in range(0, patches.shape[0], batch)]
    net.train(was_training)
    return torch.cat(out) if out else torch.zeros((0, 128))


def evaluate(net: torch.nn.Module, pairs: PatchPairs, device: str) -> dict[str, float]:
    """FPR95 and top-1 retrieval of ``net`` on held-out pairs."""
    return pair_metrics(describe(net, pairs.anchors, device), describe(net, pairs.positives, device))


def _initial_weights(options: TrainDescriptorOptions, net: torch.nn.Module) -> str:
    """Load --init, else the hardnet-liberty weight when installed, else keep the random init."""
    if options.from_scratch:
        return "random (--from-scratch)"
    if options.init is not None:
        try:
            checkpoint = read_checkpoint(options.init)
            net.load_state_dict(load_hardnet(checkpoint).state_dict())
        except CheckpointError as exc:
            raise UsageError(f"--init {exc}") from None
        return f"{options.init} (sha256 {checkpoint.sha256[:12]})"
    try:

        path = weight_path("hardnet-liberty")
    except (ReidError, ImportError):
        return "random (no hardnet-liberty weight installed)"
    try:
        net.load_state_dict(load_hardnet(read_checkpoint(path)).state_dict())
    except CheckpointError as exc:
        raise ReidError(f"weight hardnet-liberty: {exc}") from None
    return f"hardnet-liberty ({path})"


def _optimizer(options: TrainDescriptorOptions, net: torch.nn.Module) -> torch.optim.Optimizer:
    if options.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=options.learning_rate, weight_decay=1e-4)
    return torch.optim.SGD(net.parameters(), lr=options.learning_rate, momentum=0.9, dampening=0.9, weight_decay=1e-4)


def _run_to_resume(options: TrainDescriptorOptions, notices: list[str]) -> DescriptorCheckpoint | None:
    """The checkpoint at ``--out`` that ``--resume`` continues (checked to be one of a run with the
    same options), else None; an existing ``--out`` without ``--resume`` is refused."""
    if not options.out.exists():
        if options.resume:
            notices.append(f"nothing to resume at {options.out}; starting a new run")
        return None
    if not options.resume:
        raise UsageError(f"--out {options.out} exists; pass --resume to continue that run, or another --out")
    try:
        previous = read_checkpoint(options.out)
    except CheckpointError as exc:
        raise UsageError(f"--resume: {exc}") from None
    if previous.optimizer is None or "epoch" not in previous.meta:
        raise UsageError(f"--resume: {options.out} is not a checkpoint of `reid-engine train descriptor`; "
                         "pass another --out")
    stored = previous.meta.get("options", {})
    changed = [f"{k} {stored.get(k)!r} → {v!r}" for k, v in options.resume_view().items() if stored.get(k) != v]
    if changed:
        raise UsageError(f"--resume: {options.out} was trained with other options ({'; '.join(changed)}); "
                         "pass the same ones (only --epochs may change), or another --out")
    return previous


@dataclass
class _TrainingPhotos:
    """The detected regions of the readable photos, split by photo, and the fixed held-out pairs."""

    train: list[PhotoRegions]
    val: list[PhotoRegions]
    val_ids: set[str]
    val_pairs: PatchPairs
    skipped: list[str]  # why unreadable photos were skipped
    digest: str  # of the photos' ids and contents
    detector: str  # the region detector, in words


def _training_photos(options: TrainDescriptorOptions, table, previous: DescriptorCheckpoint | None, notices: list[str],
                     log: Callable[[str], None]) -> _TrainingPhotos:
    """Regions of every photo (``previous``'s held-out photos when resuming, else a seeded split);
    too few photos, regions or held-out pairs raise."""
    records = _records(options, table)
    ids = [r.image_id for r in records]
    val_ids = set(previous.meta["val_photos"]) if previous is not None else _split_photos(ids, options.val_share, options.seed)
    photos, skipped, photos_digest, detector_name = _detect_photos(options, table, records, notices, log)
    if previous is not None and previous.meta.get("photos_sha256") != photos_digest:
        raise UsageError(f"--resume: the photos differ from those {options.out} was trained on; "
                         "resume with the same photos, or pass another --out")
    train = [p for p in photos if p.image_id not in val_ids]
    val = [p for p in photos if p.image_id in val_ids]
    n_train_regions = sum(p.lafs.shape[0] for p in train)
    if not train or not val or n_train_regions < MIN_TRAIN_REGIONS:
        raise UsageError(
            f"{options.photos}: too few regions to train on: {n_train_regions} in {len(train)} training photo(s), "
            f"{sum(p.lafs.shape[0] for p in val)} in {len(val)} held-out photo(s) (at least {MIN_TRAIN_REGIONS} "
            "training regions and one held-out photo are needed); add photos, loosen the masks/bboxes, or raise "
            "--max-keypoints")
    val_pairs = sample_pairs(val, options.val_pairs, options.warp, np.random.default_rng([options.seed, 29]))
    if len(val_pairs) < MIN_VAL_PAIRS:
        raise UsageError(f"{options.photos}: only {len(val_pairs)} held-out pairs could be drawn from {len(val)} "
                         f"photo(s) (at least {MIN_VAL_PAIRS}); add photos or raise --val-share")
    return _TrainingPhotos(train, val, val_ids, val_pairs, skipped, photos_digest, detector_name)


def _detect_photos(options: TrainDescriptorOptions, table, records: list[ImageRecord], notices: list[str],
                   log: Callable[[str], None]) -> tuple[list[PhotoRegions], list[str], str, str]:
    """(regions of the readable photos, why others were skipped, their digest, the detector in words);
    the detector is dropped once done. No readable photo raises."""
    detector, detector_name, detector_id, more = _detector(options, table, options.device)
    notices += more
    log(f"detecting regions in {len(records)} photos with {detector_name}, resize {options.resize}, "
        f"at most {options.max_keypoints} a photo")
    photos, skipped, photos_digest = _detect(records, detector, detector_id, options.resize, regions_path(options.out), log)
    del detector
    if not photos:
        raise UsageError(f"{options.photos}: none of the {len(records)} photos could be read "
                         f"(first: {skipped[0] if skipped else '?'})")
    return photos, skipped, photos_digest, detector_name


@dataclass
class _Start:
    """The network to train and where it starts: its weights' origin, the baselines, the history so far."""

    net: torch.nn.Module
    init: str
    baselines: dict[str, dict]
    history: list[dict]
    first_epoch: int


def _start_network(options: TrainDescriptorOptions, val_pairs: PatchPairs, previous: DescriptorCheckpoint | None
                   ) -> _Start:
    """A seeded HardNet measured beside RootSIFT, then loaded from ``previous`` or its initial weights."""
    import kornia.feature as KF

    device = options.device
    torch.manual_seed(options.seed)
    net = KF.HardNet(pretrained=False).to(device)
    baselines: dict[str, dict] = {
        "rootsift": pair_metrics(*(KF.SIFTDescriptor(PATCH_SIZE, rootsift=True)(_as_input(p, "cpu"))
                                   for p in (val_pairs.anchors, val_pairs.positives))),
        "untrained": evaluate(net, val_pairs, device),
    }
    if previous is not None:
        net.load_state_dict(previous.state_dict)
        return _Start(net, previous.meta.get("init", "?"), {**previous.meta.get("baselines", {}), **baselines},
                      list(previous.meta.get("history", [])), int(previous.meta["epoch"]) + 1)
    init = _initial_weights(options, net.cpu())
    net.to(device)
    if not init.startswith("random"):
        baselines["init"] = evaluate(net, val_pairs, device)
    return _Start(net, init, baselines, [], 1)


def _checkpoint_meta(options: TrainDescriptorOptions, start: _Start, photos: _TrainingPhotos) -> dict:
    """What every checkpoint of this run says about how it was trained (the epoch and history come on top)."""
    import kornia

    return {
        "options": options.resume_view(), "epochs": options.epochs, "init": start.init, "detector": photos.detector,
        "photos": str(options.photos), "split": str(options.split) if options.split else "",
        "photos_sha256": photos.digest, "val_photos": sorted(photos.val_ids), "train_photos": len(photos.train),
        "val_pairs": len(photos.val_pairs), "baselines": start.baselines, "patch_size": PATCH_SIZE,
        "kornia": str(kornia.__version__), "torch": str(torch.__version__), "warp": asdict(options.warp),
    }


def _train_epoch(options: TrainDescriptorOptions, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 photos: _TrainingPhotos, epoch: int) -> dict:
    """Draw this epoch's pairs (seeded by (seed, epoch)), train on them, measure; its history row."""
    started = time.time()
    rng = np.random.default_rng([options.seed, epoch])
    torch.manual_seed(options.seed * 100_003 + epoch)
    pairs = sample_pairs(photos.train, options.pairs, options.warp, rng)
    if len(pairs) < options.batch_size // 2:
        raise UsageError(f"only {len(pairs)} training pairs could be drawn (batch size {options.batch_size}); "
                         "add photos or lower --batch-size")
    losses = _descend(options, net, optimizer, pairs, epoch)
    metrics = evaluate(net, photos.val_pairs, options.device)
    return {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"), "train_pairs": len(pairs),
            "val_fpr95": metrics["fpr95"], "val_top1": metrics["top1"], "seconds": round(time.time() - started, 1)}


def _descend(options: TrainDescriptorOptions, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
             pairs: PatchPairs, epoch: int) -> list[float]:
    """One pass over ``pairs`` in random batches, the learning rate decaying linearly to zero over the
    whole run; the batches' losses."""
    steps_per_epoch = math.ceil(options.pairs / options.batch_size)
    total_steps = options.epochs * steps_per_epoch
    device = options.device
    order = torch.randperm(len(pairs))
    net.train()
    losses = []
    step = (epoch - 1) * steps_per_epoch
    for i in range(0, len(pairs), options.batch_size):
        idx = order[i:i + options.batch_size]
        if idx.numel() < 8:
            continue
        for group in optimizer.param_groups:
            group["lr"] = options.learning_rate * max(0.0, 1.0 - step / total_steps)
        loss = hardnet_loss(net(_as_input(pairs.anchors[idx], device)), net(_as_input(pairs.positives[idx], device)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
    return losses


def train_descriptor(options: TrainDescriptorOptions, table, log: Callable[[str], None] = lambda s: None
                     ) -> TrainDescriptorResult:
    """Run (or resume) a training; returns the per-epoch history and the baselines."""
    _check(options)
    notices: list[str] = []
    previous = _run_to_resume(options, notices)
    photos = _training_photos(options, table, previous, notices, log)
    start = _start_network(options, photos.val_pairs, previous)
    net, history = start.net, start.history
    optimizer = _optimizer(options, net)
    if previous is not None and previous.optimizer is not None:
        optimizer.load_state_dict(previous.optimizer)
    meta = _checkpoint_meta(options, start, photos)
    if start.first_epoch > options.epochs:
        notices.append(f"{options.out} already has {start.first_epoch - 1} epoch(s); raise --epochs to train more")
    for epoch in range(start.first_epoch, options.epochs + 1):
        row = _train_epoch(options, net, optimizer, photos, epoch)
        history.append(row)
        write_checkpoint(options.out, net.state_dict(), {**meta, "epoch": epoch, "history": history,
                                                         "complete": epoch == options.epochs},
                         optimizer=optimizer.state_dict())
        log(f"epoch {epoch}/{options.epochs}: loss {row['loss']:.3f}, held-out FPR95 {row['val_fpr95']:.3f}, "
            f"top-1 {row['val_top1']:.3f} ({row['train_pairs']} pairs, {row['seconds']:.0f} s); saved {options.out}")
    return TrainDescriptorResult(options.out, history, start.baselines, photos.detector, start.init,
                                 len(photos.train), len(photos.val), len(photos.val_pairs), photos.skipped, notices)
