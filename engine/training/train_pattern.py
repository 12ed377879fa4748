"""``reid-engine train pattern``: teach the pattern network to extract pelage patterns.

Data: photos with a pattern mask each (white = pattern), from a CSV (columns ``path`` and
``pattern_path`` or ``pattern_mask_path``; optional ``mask_path`` = the animal, and
``identity`` / ``individual`` to hold out whole individuals) or a folder of such CSVs (the
synthetic seal generator's ``gallery.csv`` and ``query.csv``). Paths are relative to the CSV.

Training: random crops (``crop`` px) of photos scaled to at most ``max_side``, background
greyed outside the animal's mask, brightness/contrast/gamma jitter (wet and dry fur, exposure),
horizontal flips; loss = BCE (positive pixels up-weighted by their rarity) + soft Dice, inside
the animal only. A share of the individuals (``val_share``) is held out: pattern IoU and F1 at
probability 0.5 on their whole photos after every epoch; the best epoch is kept. A checkpoint
is written atomically after every epoch (``--resume`` continues it); seeded, deterministic.
"""

from __future__ import annotations

import csv
import dataclasses
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reid_engine.errors import UsageError
from reid_engine.pattern.model import (
    PatternNet,
    PatternSpec,
    imagenet_encoder_start,
    network_input,
    predict_pattern,
    to_payload,
)
from reid_engine.training.checkpoint import atomic_save

PATTERN_COLUMNS = ("pattern_path", "pattern_mask_path")
IDENTITY_COLUMNS = ("individual", "identity")


@dataclass(frozen=True)
class TrainPatternOptions:
    data: Path
    out: Path
    epochs: int = 8
    crop: int = 256
    max_side: int = 512
    batch: int = 8
    lr: float = 1e-3
    val_share: float = 0.2
    seed: int = 0
    device: str = "cpu"
    checkpoint: Path | None = None  # default: OUT.ckpt
    resume: bool = False
    encoder: str = "tf_efficientnet_lite0"


@dataclass
class TrainPatternResult:
    history: list[dict] = field(default_factory=list)  # per epoch: loss, val_iou, val_f1, seconds
    best_epoch: int = 0
    train_images: int = 0
    val_images: int = 0
    val_individuals: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    init: str = ""
    out: Path | None = None
    model_sha256: str = ""


@dataclass
class PatternSet:
    """Loaded pairs: rgb uint8 (H, W, 3), animal bool (H, W), pattern bool (H, W) per photo."""

    rgb: list[np.ndarray]
    animal: list[np.ndarray]
    pattern: list[np.ndarray]
    individuals: list[str]


def read_rows(data: Path) -> list[dict[str, str]]:
    """Rows with absolute ``path``, ``pattern`` and (optional) ``mask`` and ``individual``."""
    data = Path(data).expanduser()
    if not data.exists():
        raise UsageError(f"--data {data}: no such file or folder")
    files = sorted(data.glob("*.csv")) if data.is_dir() else [data]
    rows = []
    for path in files:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            column = next((c for c in PATTERN_COLUMNS if c in (reader.fieldnames or [])), None)
            if column is None:
                continue
            for i, r in enumerate(reader):
                if not (r.get(column) or "").strip():
                    continue
                who = next((r[c] for c in IDENTITY_COLUMNS if (r.get(c) or "").strip()), f"{path.name}:{i}")
                rows.append({"path": str(path.parent / r["path"]), "pattern": str(path.parent / r[column]),
                             "mask": str(path.parent / r["mask_path"]) if (r.get("mask_path") or "").strip() else "",
                             "individual": who})
    if not rows:
        raise UsageError(f"--data {data}: no CSV row with a pattern mask (columns path and "
                         f"{' or '.join(PATTERN_COLUMNS)}, paths relative to the CSV)")
    return rows


def load_pairs(rows: list[dict[str, str]], max_side: int) -> PatternSet:
    rgb, animal, pattern = [], [], []
    for r in rows:
        try:
            image = Image.open(r["path"]).convert("RGB")
            target = Image.open(r["pattern"]).convert("L")
            body = Image.open(r["mask"]).convert("L") if r["mask"] else None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{r['path']}: cannot be read with its pattern mask {r['pattern']} ({exc})") from None
        if target.size != image.size:
            raise UsageError(f"{r['pattern']}: {target.size[0]}x{target.size[1]} px, its photo {r['path']} is "
                             f"{image.size[0]}x{image.size[1]}; a pattern mask must be the photo's size")
        scale = min(1.0, max_side / max(image.size))
        size = (max(32, round(image.width * scale)), max(32, round(image.height * scale)))
        rgb.append(np.asarray(image.resize(size, Image.BILINEAR)))
        pattern.append(np.asarray(target.resize(size, Image.BILINEAR)) > 127)
        animal.append(np.asarray(body.resize(size, Image.NEAREST)) > 127 if body is not None
                      else np.ones(size[::-1], bool))
    return PatternSet(rgb, animal, pattern, [r["individual"] for r in rows])


def split_individuals(individuals: list[str], val_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    names = sorted(set(individuals))
    rng = np.random.default_rng(seed)
    n_val = int(round(val_share * len(names))) if len(names) > 1 else 0
    held = set(rng.choice(names, n_val, replace=False).tolist()) if n_val else set()
    is_val = np.array([i in held for i in individuals])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _batch(data: PatternSet, rows: np.ndarray, crop: int, rng: np.random.Generator):
    """(x float32 (B, 3, crop, crop), target float32 (B, 1, crop, crop), inside float32 (B, 1, crop, crop))."""
    xs, ys, ws = [], [], []
    for r in rows:
        rgb, animal, pattern = data.rgb[r], data.animal[r], data.pattern[r]
        h, w = rgb.shape[:2]
        ph, pw = max(0, crop - h), max(0, crop - w)
        if ph or pw:
            rgb = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
            animal = np.pad(animal, ((0, ph), (0, pw)))
            pattern = np.pad(pattern, ((0, ph), (0, pw)))
            h, w = rgb.shape[:2]
        ys_, xs_ = np.nonzero(animal)
        if len(ys_) and rng.random() < 0.8:  # mostly crops centred on the animal
            k = rng.integers(len(ys_))
            y0 = int(np.clip(ys_[k] - crop // 2, 0, h - crop))
            x0 = int(np.clip(xs_[k] - crop // 2, 0, w - crop))
        else:
            y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        sl = (slice(y0, y0 + crop), slice(x0, x0 + crop))
        img = rgb[sl].astype(np.float32)
        img = np.clip((img / 255.0) ** rng.uniform(0.7, 1.4) * rng.uniform(0.7, 1.3) + rng.uniform(-0.1, 0.1), 0, 1)
        img = (img * 255).astype(np.uint8)
        a, t = animal[sl], pattern[sl]
        if rng.random() < 0.5:
            img, a, t = img[:, ::-1], a[:, ::-1], t[:, ::-1]
        xs.append(network_input(img, a))
        ys.append(torch.from_numpy(np.ascontiguousarray(t)).float()[None])
        ws.append(torch.from_numpy(np.ascontiguousarray(a)).float()[None])
    return torch.stack(xs), torch.stack(ys), torch.stack(ws)


def pattern_loss(logits: torch.Tensor, target: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """BCE with rare positives up-weighted + soft Dice, both over the animal's pixels only."""
    n = inside.sum().clamp_min(1.0)
    pos = (target * inside).sum()
    pos_weight = ((n - pos) / pos.clamp_min(1.0)).clamp(1.0, 20.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
    bce = (bce * inside).sum() / n
    p = torch.sigmoid(logits) * inside
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + (target * inside).sum() + 1)
    return bce + dice


def evaluate(net: PatternNet, data: PatternSet, rows: np.ndarray, device: str) -> dict[str, float]:
    """Pattern IoU and F1 at probability 0.5, pooled over ``rows``' animal pixels."""
    if len(rows) == 0:
        return {"iou": float("nan"), "f1": float("nan")}
    net.eval()
    tp = fp = fn = 0
    for r in rows:
        predicted = predict_pattern(net, data.rgb[r], data.animal[r], device) > 0.5
        truth = data.pattern[r] & data.animal[r]
        predicted &= data.animal[r]
        tp += int((predicted & truth).sum())
        fp += int((predicted & ~truth).sum())
        fn += int((~predicted & truth).sum())
    return {"iou": tp / max(1, tp + fp + fn), "f1": 2 * tp / max(1, 2 * tp + fp + fn)}


def train_pattern(options: TrainPatternOptions, log: Callable[[str], None] = print) -> TrainPatternResult:
    """Load, split by individual, train, keep the best epoch in ``options.out`` (module docstring)."""
    t0 = time.perf_counter()
    torch.manual_seed(options.seed)
    result = TrainPatternResult()
    rows = read_rows(options.data)
    data = load_pairs(rows, options.max_side)
    train_rows, val_rows = split_individuals(data.individuals, options.val_share, options.seed)
    if len(train_rows) < 2:
        raise UsageError(f"--data {options.data}: {len(train_rows)} photo(s) to train on; need at least 2")
    result.train_images, result.val_images = len(train_rows), len(val_rows)
    result.val_individuals = len({data.individuals[r] for r in val_rows})
    net = PatternNet(PatternSpec(encoder=options.encoder)).to(options.device)
    result.init = imagenet_encoder_start(net) or "random"
    decoder = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    optimizer = torch.optim.AdamW([{"params": net.encoder.parameters(), "lr": options.lr * 0.3},
                                   {"params": decoder, "lr": options.lr}], weight_decay=1e-4)
    checkpoint = options.checkpoint or options.out.with_name(options.out.name + ".ckpt")
    start, best = 0, -1.0
    if options.resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        start, best, result.history = int(state["epoch"]), float(state["best"]), list(state["history"])
        result.best_epoch = int(state["best_epoch"])
        log(f"resumed after epoch {start} from {checkpoint}")
    steps = max(1, len(train_rows) // options.batch)
    for epoch in range(start + 1, options.epochs + 1):
        t = time.perf_counter()
        rng = np.random.default_rng([options.seed, epoch])
        torch.manual_seed(options.seed * 1000 + epoch)
        net.train()
        order = rng.permutation(train_rows)
        losses = []
        for step in range(steps):
            x, y, w = _batch(data, order[step * options.batch:(step + 1) * options.batch], options.crop, rng)
            loss = pattern_loss(net(x.to(options.device)), y.to(options.device), w.to(options.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach().item())
        scores = evaluate(net, data, val_rows, options.device)
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "val_iou": scores["iou"], "val_f1": scores["f1"],
               "seconds": time.perf_counter() - t}
        result.history.append(row)
        key = scores["f1"] if len(val_rows) else -row["loss"]
        if key > best:
            best, result.best_epoch = key, epoch
            meta = {"trained_on": str(options.data), "epoch": epoch, "val_iou": scores["iou"], "val_f1": scores["f1"],
                    "train_images": result.train_images, "val_images": result.val_images, "init": result.init,
                    "options": {k: str(v) for k, v in dataclasses.asdict(options).items()}}
            result.model_sha256 = atomic_save(to_payload(net, meta), options.out)
        atomic_save({"net": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "best": best,
                     "best_epoch": result.best_epoch, "history": result.history}, checkpoint)
        log(f"epoch {epoch}: loss {row['loss']:.3f}, held-out pattern IoU {scores['iou']:.3f}, F1 {scores['f1']:.3f}, "
            f"{row['seconds']:.0f} s")
    result.out = options.out
    result.seconds = time.perf_counter() - t0
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result
