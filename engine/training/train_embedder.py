"""``reid-engine train embedder``: a re-ID embedding learned from the user's labelled gallery.

1. The labelled photos (``--gallery``, with ``--split`` only its gallery rows; else everything
   enrolled in ``--db``) are enrolled and loaded as the profile sees them: decoded, put on the
   animal by its ``[segment]`` step (mask cached in the database), preprocessed, then
   background-greyed, cropped and squared (:mod:`reid_engine.embedding.views`).
2. A share of the identities (``val_share``, only identities with 2+ photos) is held out; the
   rest train a :class:`~reid_engine.embedding.model.ReidNet` (timm backbone from its offline
   ImageNet weights or ``--init``) with sub-center ArcFace and dynamic margins
   (:mod:`.arcface`) on P×K identity-balanced batches, with identity-preserving augmentation
   (random resized crop, colour, blur, noise; horizontal flip only where the profile allows).
3. After every epoch the held-out mAP and top-1 (each held-out photo against the other
   held-out photos) are measured; the best epoch is kept and training stops early when it has
   not improved for ``patience`` epochs. The checkpoint (model, head, optimiser, history) is
   written atomically after every epoch, so ``--resume`` continues a killed run.
4. The best model is stored in the gallery database (key per profile, with what it was trained
   on and its validation figures) and, with ``--out``, written as a file.

Determinism: the identity split, batch order, augmentation and initialisation follow ``seed``
(each epoch re-seeds from (seed, epoch), so a resumed run draws what the uninterrupted one would).
"""

from __future__ import annotations

import dataclasses
import hashlib
import resource
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from reid_engine.components import Components, build_components
from reid_engine.embedding import model as reid_model
from reid_engine.embedding.stored import MODEL_KIND, model_key
from reid_engine.embedding.views import animal_square, square_frame, to_input
from reid_engine.errors import ImageDecodeError, ReidError, UsageError
from reid_engine.inputs.enrolment import enroll_manifest
from reid_engine.inputs.manifests import apply_split, load_manifest
from reid_engine.inputs.views import gallery_record, image_loader
from reid_engine.keypoints import landmark_names, landmarks_in_image
from reid_engine.progress import Progress
from reid_engine.records import ImageError, ImageRecord
from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import Profile
from reid_engine.store.database import GalleryDatabase
from reid_engine.training.arcface import SubCenterArcFace, dynamic_margins, pk_batches
from reid_engine.training.checkpoint import atomic_save
from reid_engine.training.dve import dve_step_loss
from reid_engine.training.landmark_id import given_heatmaps, landmark_batch, landmark_loss

METHODS = ("arcface", "landmark-id", "dve")
DVE_DIM = 64  # the paper's d
MIN_IDENTITIES = 2  # identities with 2+ photos needed to learn anything
PRE_SCALE = 1.15  # photos are kept at image_size * PRE_SCALE for random resized crops
RESUME_KEYS = ("method", "backbone", "image_size", "dim", "batch_p", "batch_k", "lr", "val_share", "seed", "flip",
               "init", "mean", "std")  # a checkpoint written before "mean" and "std" is compared on the others


class NotEnoughLabels(UsageError):
    """Too few labelled photos to train; nothing is stored."""


@dataclass(frozen=True)
class TrainEmbedderOptions:
    """What ``reid-engine train embedder`` was asked to do (see the CLI help for each)."""

    profile: Profile
    db: Path
    gallery: Path | None = None
    split: Path | None = None
    method: str = "arcface"
    backbone: str = "tf_efficientnet_lite0"
    init: Path | None = None
    epochs: int = 12
    image_size: int = 224
    dim: int = 512
    mean: tuple[float, float, float] = reid_model.IMAGENET_MEAN  # the backbone's input normalisation
    std: tuple[float, float, float] = reid_model.IMAGENET_STD
    init_note: str = ""  # what --init resolved to (a model folder's file and config.json)
    batch_p: int = 8
    batch_k: int = 4
    lr: float = 1e-3
    val_share: float = 0.1
    patience: int = 3
    flip: bool = False
    out: Path | None = None
    checkpoint: Path | None = None
    resume: bool = False
    device: str = "cpu"
    seed: int = 0

    def resume_view(self) -> dict:
        return {k: str(getattr(self, k)) for k in RESUME_KEYS}

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint or self.db.with_name(f"{self.db.name}.embedder-{self.profile.name}.ckpt")


@dataclass
class TrainEmbedderResult:
    history: list[dict] = field(default_factory=list)  # per epoch: loss, val_map, val_top1, seconds
    start: dict = field(default_factory=dict)  # validation figures of the untrained start
    best_epoch: int = 0
    train_images: int = 0
    train_identities: int = 0
    val_images: int = 0
    val_identities: int = 0
    probe_images: int = 0  # held-out photos of identities that are trained on
    skipped: list[ImageError] = field(default_factory=list)
    seconds_loading: float = 0.0
    seconds_training: float = 0.0
    peak_rss_mb: float = 0.0
    init: str = ""
    model_sha256: str = ""
    out: Path | None = None
    stored_key: str = ""
    notices: list[str] = field(default_factory=list)


@dataclass
class AnimalSet:
    """Loaded training photos: ``squares`` uint8 (N, S', S', 3), ``labels`` int64 (N,) into ``names``."""

    squares: np.ndarray
    labels: np.ndarray
    names: list[str]
    image_ids: list[str]
    content_hashes: list[str]
    encounters: list[str] = field(default_factory=list)  # per photo: its sequence, else its date, else ""
    landmark_names: tuple[str, ...] = ()  # Landmark-Id: the K landmarks, in channel order
    landmarks: np.ndarray | None = None  # float32 (N, K, 2) x, y in px of the squares, NaN = not visible
    annotated: np.ndarray | None = None  # bool (N,): the photo has keypoints (else the locator's are used)
    orientations: list[str] = field(default_factory=list)  # per photo: the manifest's orientation, or ""


# -- data ------------------------------------------------------------------------------------
def labelled_records(options: TrainEmbedderOptions, db: GalleryDatabase, table: PluginTable,
                     errors: list[ImageError]) -> list[tuple[ImageRecord, str]]:
    """(record, content hash) of every labelled photo to learn from, enrolled into ``db``."""
    if options.gallery is None:
        if options.split is not None:
            raise UsageError("--split needs --gallery: the labelled manifest the split refers to")
        return [(gallery_record(g), g.content_hash) for g in db.gallery()]
    manifest = load_manifest(options.gallery, "gallery", table)
    if options.split is not None:
        manifest, _ = apply_split(manifest, options.split)  # the queries are never seen
    enroll_manifest(db, manifest, errors)
    wanted = {r.image_id for r in manifest.records}
    return [(gallery_record(g), g.content_hash) for g in db.gallery() if g.image_id in wanted]


def check_labels(identities: list[str], where: str) -> None:
    counts: dict[str, int] = {}
    for ident in identities:
        counts[ident] = counts.get(ident, 0) + 1
    multi = sum(1 for c in counts.values() if c >= 2)
    if multi < MIN_IDENTITIES:
        raise NotEnoughLabels(
            f"{where}: training an embedder needs at least {MIN_IDENTITIES} identities with 2+ photos each; there "
            f"are {len(counts)} identities, {multi} with 2+ photos. Nothing was stored; enrol more labelled photos.")


def load_animals(records: list[tuple[ImageRecord, str]], loader: Callable, side: int, errors: list[ImageError],
                 advance: Callable[[int], None] = lambda n=1: None, names: tuple[str, ...] = ()) -> AnimalSet:
    """Decode, segment and square every photo once (bad photos go to ``errors``); with landmark
    ``names``, each photo's keypoints are carried into its square."""
    squares, idents, ids, hashes, encounters, points, annotated, orientations = [], [], [], [], [], [], [], []
    for record, chash in records:
        try:
            image = loader(record)
            squares.append(animal_square(image, side))
            if names:
                pts = landmarks_in_image(image, names)
                annotated.append(pts is not None)
                points.append(square_frame(image).points(pts, side) if pts is not None
                              else np.full((len(names), 2), np.nan, np.float32))
            idents.append(record.identity)
            ids.append(record.image_id)
            hashes.append(chash)
            encounters.append(str(record.sequence or record.date or ""))
            orientations.append(str(record.orientation or ""))
        except ImageDecodeError as exc:
            errors.append(ImageError(record.image_id, str(record.path), "decode", str(exc)))
        advance(1)
    label_names = sorted(set(idents))
    position = {n: i for i, n in enumerate(label_names)}
    array = np.stack(squares) if squares else np.zeros((0, side, side, 3), np.uint8)
    data = AnimalSet(array, np.array([position[i] for i in idents], np.int64), label_names, ids, hashes, encounters,
                     orientations=orientations)
    if names:
        data.landmark_names = tuple(names)
        data.landmarks = np.stack(points) if points else np.zeros((0, len(names), 2), np.float32)
        data.annotated = np.array(annotated, bool)
    return data


def identity_split(labels: np.ndarray, val_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val): ``val_share`` of the identities with 2+ photos are held out,
    keeping at least MIN_IDENTITIES multi-photo identities for training."""
    counts = np.bincount(labels)
    multi = np.flatnonzero(counts >= 2)
    n_val = int(round(val_share * len(counts)))
    n_val = max(0, min(n_val, len(multi) - MIN_IDENTITIES))
    if val_share > 0 and n_val < 2 and len(multi) - MIN_IDENTITIES >= 2:
        n_val = 2  # mAP needs at least two held-out identities
    rng = np.random.default_rng(seed)
    val_ids = set(rng.choice(multi, n_val, replace=False).tolist()) if n_val > 0 else set()
    is_val = np.array([lab in val_ids for lab in labels])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def photo_probes(labels: np.ndarray, train_rows: np.ndarray, share: float, seed: int,
                 encounters: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, probe rows): photos of ``share`` of the training identities (at least 2) are
    held out, to measure how well the net finds *known* individuals - what a run asks of it for
    most queries.

    With ``encounters`` (per photo: a sequence or date), an identity seen in 2+ encounters gives
    *all* photos of one encounter: photos of one burst look alike, so a probe from a burst the
    net trained on flatters it (synthetic seals: held-out top-1 0.8 while real queries got 0.12).
    Without them, one photo of an identity with 3+ photos.
    """
    if share <= 0:
        return train_rows, np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, 1])
    n_wanted = max(2, int(round(share * len(set(labels[train_rows].tolist())))))
    rows_of: dict[int, list[int]] = {}
    for r in train_rows:
        rows_of.setdefault(int(labels[r]), []).append(int(r))
    enc = list(encounters)
    by_encounter = {c: sorted({enc[r] for r in rows}) for c, rows in rows_of.items()} if enc else {}
    multi = [c for c in sorted(rows_of) if len(by_encounter.get(c, ())) >= 2 and "" not in by_encounter[c]]
    probes: list[int] = []
    if len(multi) >= 2:  # hold out whole encounters
        for c in rng.choice(multi, min(len(multi), n_wanted), replace=False):
            held = by_encounter[int(c)][int(rng.integers(len(by_encounter[int(c)])))]
            probes.extend(r for r in rows_of[int(c)] if enc[r] == held)
    else:
        eligible = [c for c in sorted(rows_of) if len(rows_of[c]) >= 3]
        if len(eligible) < 2:
            return train_rows, np.zeros(0, np.int64)
        for c in rng.choice(eligible, min(len(eligible), n_wanted), replace=False):
            probes.append(int(rng.choice(rows_of[int(c)])))
    probes_arr = np.array(sorted(probes), np.int64)
    return np.setdiff1d(train_rows, probes_arr), probes_arr


def known_gallery_rows(labels: np.ndarray, train_rows: np.ndarray, probe_rows: np.ndarray, seed: int,
                       others: int = 300) -> np.ndarray:
    """The training photos the probes are searched among: all of the probes' identities, plus
    a fixed seeded sample of ``others`` other training photos (bounded validation cost)."""
    probe_ids = set(labels[probe_rows].tolist())
    own = train_rows[np.isin(labels[train_rows], list(probe_ids))]
    rest = train_rows[~np.isin(labels[train_rows], list(probe_ids))]
    if len(rest) > others:
        rest = np.sort(np.random.default_rng([seed, 2]).choice(rest, others, replace=False))
    return np.sort(np.concatenate([own, rest]))


def known_metrics(probe: np.ndarray, probe_labels: np.ndarray, gallery: np.ndarray,
                  gallery_labels: np.ndarray) -> dict[str, float]:
    """Probes (N, D) against a gallery (M, D), identities ranked by their best photo: top-1 and
    the mean reciprocal rank of the true identity."""
    sim = probe @ gallery.T
    ids = np.unique(gallery_labels)
    best = np.stack([sim[:, gallery_labels == c].max(1) for c in ids], 1)  # (N, identities)
    true_score = best[np.arange(len(probe)), np.searchsorted(ids, probe_labels)]  # probes' identities are in it
    rank = 1 + (best > true_score[:, None]).sum(1)
    return {"known_top1": float(np.mean(rank == 1)), "known_mrr": float(np.mean(1.0 / rank))}


def _describe(metrics: dict[str, float]) -> str:
    parts = []
    if np.isfinite(metrics.get("map", float("nan"))):
        parts.append(f"new individuals mAP {metrics['map']:.3f} top-1 {metrics['top1']:.3f}")
    if "known_top1" in metrics:
        parts.append(f"known individuals top-1 {metrics['known_top1']:.3f} MRR {metrics['known_mrr']:.3f}")
    return ", ".join(parts) or "no held-out photos"


# -- augmentation and evaluation -----------------------------------------------------------------
def make_augment_parts(image_size: int, flip: bool) -> tuple[Callable, Callable]:
    """(geometric, photometric) identity-preserving random views: the geometric part takes
    (C, S', S') tensors of any channels (photo and heatmaps move together) → (C, S, S), the
    photometric part only the photo's 3 channels."""
    from torchvision.transforms import v2

    geometric = [v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), ratio=(0.75, 1.333), antialias=True)]
    if flip:
        geometric.append(v2.RandomHorizontalFlip())
    photometric = [v2.RandomApply([v2.ColorJitter(0.3, 0.3, 0.25, 0.03)], p=0.8),
                   v2.RandomApply([v2.GaussianBlur(5, (0.1, 1.5))], p=0.25),
                   v2.RandomGrayscale(p=0.05)]
    return v2.Compose(geometric), v2.Compose(photometric)


def make_augment(image_size: int, flip: bool):
    """uint8 (3, S', S') tensor → uint8 (3, S, S): identity-preserving random views."""
    from torchvision.transforms import v2

    geometric, photometric = make_augment_parts(image_size, flip)
    return v2.Compose([geometric, photometric])


def embed_squares(net: reid_model.ReidNet, squares: np.ndarray, device: str, batch: int = 32,
                  points: np.ndarray | None = None, annotated: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, S', S', 3) → float32 (N, D) at the net's image size, eval mode. A Landmark-Id net
    is given the heatmaps of ``points`` (N, K, 2) (px of S') where ``annotated`` (N,), and predicts
    the others'."""
    size = net.spec.image_size
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(squares), batch):
            x = torch.as_tensor(squares[start:start + batch]).permute(0, 3, 1, 2)
            if x.shape[-1] != size:
                x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                                                    align_corners=False).round().clamp(0, 255).to(torch.uint8)
            x = to_input(x, net.spec.mean, net.spec.std).to(device)
            if net.landmark_count and points is not None and annotated is not None:
                heatmaps = given_heatmaps(points[start:start + batch], squares.shape[1], size,
                                          net.spec.heatmap_radius).to(device)
                given = torch.as_tensor(annotated[start:start + batch], dtype=torch.float32, device=device)
                out.append(net(x, heatmaps, given).float().cpu().numpy())
            else:
                out.append(net(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.spec.dim), np.float32)


def retrieval_metrics(emb: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Leave-one-out retrieval among ``emb`` (N, D): mean average precision and top-1 accuracy
    over the photos whose identity has another photo."""
    if len(emb) < 2:
        return {"map": float("nan"), "top1": float("nan")}
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    aps, top1 = [], []
    for i in range(len(emb)):
        same = labels == labels[i]
        same[i] = False
        if not same.any():
            continue
        order = np.argsort(-sim[i], kind="stable")[:-1]
        hits = same[order]
        ranks = np.flatnonzero(hits) + 1
        aps.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
        top1.append(float(hits[0]))
    return {"map": float(np.mean(aps)) if aps else float("nan"), "top1": float(np.mean(top1)) if top1 else float("nan")}


# -- training --------------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


@dataclass
class TrainingRows:
    """Which rows of an :class:`AnimalSet` train the net and which are held out to measure it."""

    train: np.ndarray  # rows trained on
    train_labels: np.ndarray  # their classes, numbered 0.. over the trained identities
    val: np.ndarray  # all photos of held-out identities
    probes: np.ndarray  # held-out photos of trained identities
    known_gallery: np.ndarray  # the training rows the probes are searched among

    @property
    def validating(self) -> bool:
        return bool(len(self.val) or len(self.probes))


@dataclass
class Trainee:
    """The net being trained, its ArcFace head, and what steps them."""

    net: reid_model.ReidNet
    head: SubCenterArcFace
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    steps_per_epoch: int


@dataclass
class BestSoFar:
    """The best weights seen (None: none measured), their held-out score, and the next epoch to run."""

    state: dict | None = None
    score: float = -1.0
    next_epoch: int = 1


def check_options(options: TrainEmbedderOptions) -> None:
    """Refuse what this version cannot train, before anything is loaded."""
    if options.method not in METHODS:
        raise UsageError(f"--method {options.method!r}: choose one of {', '.join(map(repr, METHODS))}")
    if options.image_size < 32:
        raise UsageError(f"--image-size {options.image_size}: at least 32 px")
    # the backbone takes this size, and pools as the method needs (meta tensors: no time, no weights)
    if reid_model.pooling_for(options.backbone, options.image_size) != "gem" and options.method != "arcface":
        raise reid_model.maps_needed(options.method, options.backbone)


def checkpoint_to_resume(options: TrainEmbedderOptions) -> dict:
    """The checkpoint ``--resume`` continues, checked to be of a run with the same options."""
    ckpt_path = options.checkpoint_path
    if not ckpt_path.is_file():
        raise UsageError(f"--resume: no checkpoint at {ckpt_path}; run without --resume to start")
    try:
        resumed = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ReidError(f"{ckpt_path}: checkpoint cannot be read ({type(exc).__name__}); delete it and start "
                        "again without --resume") from None
    stored, current = resumed.get("options") or {}, options.resume_view()
    differing = [k for k in current if k in stored and stored[k] != current[k]]
    if differing or not stored:
        written = ", ".join(f"{k} {stored[k]}" for k in differing) or "none recorded"
        raise UsageError(f"--resume: {ckpt_path} was written with other options ({written}); pass the same ones, "
                         "or start again without --resume")
    return resumed


def load_training_set(options: TrainEmbedderOptions, db: GalleryDatabase, table: PluginTable, components: Components,
                      errors: list[ImageError], bars: Progress) -> AnimalSet:
    """The labelled photos as the profile sees them, squared at the pre-crop size; too few labels raise."""
    records = labelled_records(options, db, table, errors)
    where = str(options.gallery or options.db)
    check_labels([r.identity for r, _ in records], where)
    loader = image_loader(components, options.profile, db)
    names = training_landmarks(options, records)
    data = load_animals(records, loader, pre_scaled_side(options), errors, bars.task("loading photos", len(records)),
                        names)
    check_labels([data.names[i] for i in data.labels], where)
    return data


def training_landmarks(options: TrainEmbedderOptions, records: list[tuple[ImageRecord, str]]) -> tuple[str, ...]:
    """The landmarks a Landmark-Id net is trained on: every name in the photos' keypoints (none for arcface)."""
    if options.method != "landmark-id":
        return ()
    names = landmark_names([r.keypoints for r, _ in records])
    if not names:
        raise UsageError(f"--method landmark-id: none of the {len(records)} labelled photos has keypoints; give the "
                         "gallery manifest a keypoints column such as {\"head\": [212, 80], \"tail\": null} "
                         "(pixels of the photo; null = not visible), or train --method arcface")
    return names


def pre_scaled_side(options: TrainEmbedderOptions) -> int:
    """Side in px the photos are kept at, so that random resized crops have room."""
    return int(round(options.image_size * PRE_SCALE))


def split_rows(data: AnimalSet, options: TrainEmbedderOptions, result: TrainEmbedderResult) -> TrainingRows:
    """Hold out identities (``val``) and photos of trained identities (``probes``); counts go to ``result``."""
    train_rows, val_rows = identity_split(data.labels, options.val_share, options.seed)
    train_rows, probe_rows = photo_probes(data.labels, train_rows, options.val_share, options.seed,
                                          data.encounters)
    train_classes = sorted(set(data.labels[train_rows].tolist()))
    remap = {c: i for i, c in enumerate(train_classes)}
    train_labels = np.array([remap[c] for c in data.labels[train_rows]], np.int64)
    result.train_images, result.train_identities = len(train_rows), len(train_classes)
    result.val_images, result.val_identities = len(val_rows), len(set(data.labels[val_rows].tolist()))
    result.probe_images = len(probe_rows)
    known_gallery = known_gallery_rows(data.labels, train_rows, probe_rows, options.seed)
    return TrainingRows(train_rows, train_labels, val_rows, probe_rows, known_gallery)


def orientation_classes(options: TrainEmbedderOptions, data: AnimalSet) -> tuple[str, ...]:
    """The DVE orientation head's classes: the manifest's orientations when there are 2+ of them
    (none with flips, which turn a left flank into a right one)."""
    names = tuple(sorted({o for o in data.orientations if o}))
    return names if options.method == "dve" and len(names) >= 2 and not options.flip else ()


def build_trainee(options: TrainEmbedderOptions, rows: TrainingRows, result: TrainEmbedderResult,
                  landmarks: tuple[str, ...] = (), orientations: tuple[str, ...] = ()) -> Trainee:
    """Seeded net (its starting weights named in ``result.init``), head, AdamW and the LR schedule."""
    _seed_everything(options.seed)
    dim = options.dim or reid_model.feature_count(options.backbone)  # 0: no neck, the pooled features
    spec = reid_model.EmbedderSpec(backbone=options.backbone, dim=dim, neck=options.dim > 0,
                                   image_size=options.image_size, mean=tuple(options.mean), std=tuple(options.std),
                                   method=options.method, landmarks=tuple(landmarks),
                                   dve_dim=DVE_DIM if options.method == "dve" else 0, orientations=orientations,
                                   pooling=reid_model.pooling_for(options.backbone, options.image_size,
                                                                  3 + len(landmarks)))
    net = reid_model.ReidNet(spec)
    result.init = (reid_model.init_from_file(net, options.init) if options.init is not None
                   else reid_model.imagenet_start(net) or "random (no offline ImageNet weights for this backbone)")
    head = SubCenterArcFace(dim, dynamic_margins(np.bincount(rows.train_labels)))
    net.to(options.device)
    head.to(options.device)
    heads = [p for name, p in net.named_parameters() if not name.startswith("backbone.")]
    # Landmark-Id: the input layer, whose heatmap channels start at zero, learns at the heads' rate
    stem = [p for p in net.backbone.parameters() if p.ndim == 4 and p.shape[1] == 3 + net.landmark_count][:1] \
        if net.landmark_count else []
    params = [{"params": [p for p in net.backbone.parameters() if not any(p is q for q in stem)],
               "lr": options.lr * 0.3},
              {"params": [*stem, *heads, *head.parameters()], "lr": options.lr}]
    optimizer = torch.optim.AdamW(params, weight_decay=1e-4)
    steps_per_epoch = max(1, int(np.ceil(len(rows.train) / (options.batch_p * options.batch_k))))
    lr_factor = warmup_cosine(steps_per_epoch, max(1, steps_per_epoch * options.epochs))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    return Trainee(net, head, optimizer, scheduler, steps_per_epoch)


def warmup_cosine(steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    """LR factor per step: linear warm-up over (at most) the first epoch, then cosine decay to 0."""
    warmup = min(steps_per_epoch, total_steps // 5 + 1)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return float(0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, total_steps - warmup))))

    return lr_factor


def validate(net: reid_model.ReidNet, data: AnimalSet, rows: TrainingRows, device: str) -> dict[str, float]:
    """Held-out individuals (mAP, top-1 among themselves) and held-out photos of known
    individuals (top-1 and MRR against their training photos); ``score`` = the mean mAP/MRR."""
    def embed(which: np.ndarray) -> np.ndarray:
        if data.landmarks is None:
            return embed_squares(net, data.squares[which], device)
        return embed_squares(net, data.squares[which], device, points=data.landmarks[which],
                             annotated=data.annotated[which])

    out = retrieval_metrics(embed(rows.val), data.labels[rows.val])
    if len(rows.probes):
        out.update(known_metrics(embed(rows.probes), data.labels[rows.probes], embed(rows.known_gallery),
                                 data.labels[rows.known_gallery]))
    parts = [v for k, v in out.items() if k in ("map", "known_mrr") and np.isfinite(v)]
    out["score"] = float(np.mean(parts)) if parts else float("nan")
    return out


def _weights(net: reid_model.ReidNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def starting_point(options: TrainEmbedderOptions, trainee: Trainee, resumed: dict | None, data: AnimalSet,
                   rows: TrainingRows, result: TrainEmbedderResult, log: Callable[[str], None]) -> BestSoFar:
    """Restore a resumed run, else measure the untrained start (``result.start``), which competes too."""
    if resumed is not None:
        trainee.net.load_state_dict(resumed["net"])
        trainee.head.load_state_dict(resumed["head"])
        trainee.optimizer.load_state_dict(resumed["optimizer"])
        trainee.scheduler.load_state_dict(resumed["scheduler"])
        result.history, result.start = list(resumed["history"]), dict(resumed["start"])
        best = BestSoFar(resumed["best_net"], float(resumed["best_map"]), len(result.history) + 1)
        result.best_epoch = int(resumed["best_epoch"])
        log(f"resuming {options.checkpoint_path} after epoch {best.next_epoch - 1}")
        return best
    if not rows.validating:
        return BestSoFar()
    result.start = validate(trainee.net, data, rows, options.device)
    # the start competes too: training that only hurts the held-out photos is not kept
    best = BestSoFar(_weights(trainee.net), result.start["score"])
    log(f"start ({result.init}): {_describe(result.start)}; held out: {result.val_images} photos of "
        f"{result.val_identities} individuals, {result.probe_images} photos of known individuals")
    return best


def train_epoch(options: TrainEmbedderOptions, trainee: Trainee, augment: tuple[Callable, Callable], data: AnimalSet,
                rows: TrainingRows, epoch: int, bars: Progress) -> dict:
    """One pass over P×K batches of augmented training photos (seeded by (seed, epoch)); its history row.
    ``augment`` = :func:`make_augment_parts`."""
    t_epoch = time.perf_counter()
    _seed_everything(options.seed * 1000 + epoch)
    rng = np.random.default_rng([options.seed, epoch])
    net, head, spec = trainee.net, trainee.head, trainee.net.spec
    geometric, photometric = augment
    net.train()
    head.train()
    losses = []
    advance = bars.task(f"epoch {epoch}/{options.epochs}", trainee.steps_per_epoch)
    for batch in pk_batches(rows.train_labels, options.batch_p, options.batch_k, rng):
        picked = rows.train[batch]
        labels = torch.as_tensor(rows.train_labels[batch], device=options.device)
        if data.landmarks is not None:
            views = landmark_batch(data.squares[picked], data.landmarks[picked], data.annotated[picked], geometric,
                                   photometric, spec, rng)
            loss = landmark_loss(net, head, views, labels, rng, options.device)
        else:
            x = to_input(torch.stack([photometric(geometric(torch.as_tensor(data.squares[r]).permute(2, 0, 1)))
                                      for r in picked]), spec.mean, spec.std)
            x = (x + torch.randn_like(x) * (0.05 * (torch.rand(len(x), 1, 1, 1) < 0.3))).to(options.device)
            if spec.dve_dim:
                classes = {name: i for i, name in enumerate(spec.orientations)}
                orientation = torch.as_tensor([classes.get(data.orientations[r], -1) for r in picked],
                                              device=options.device)
                loss = dve_step_loss(net, head, x, labels, orientation, rng)
            else:
                loss = head(net(x), labels)
        trainee.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainee.optimizer.step()
        trainee.scheduler.step()
        losses.append(float(loss.detach()))
        advance(1)
    return {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
            "seconds": time.perf_counter() - t_epoch}


def run_epochs(options: TrainEmbedderOptions, trainee: Trainee, best: BestSoFar, data: AnimalSet,
               rows: TrainingRows, result: TrainEmbedderResult, bars: Progress, log: Callable[[str], None]) -> None:
    """Train from ``best.next_epoch``, validating, keeping the best and checkpointing after every epoch,
    until ``options.epochs`` or ``patience`` epochs without a better held-out score."""
    augment = make_augment_parts(options.image_size, options.flip)
    t_train = time.perf_counter()
    for epoch in range(best.next_epoch, options.epochs + 1):
        if rows.validating and epoch - 1 - result.best_epoch >= options.patience:
            log(f"stopping early: the held-out score has not improved for {options.patience} epochs")
            break
        row = train_epoch(options, trainee, augment, data, rows, epoch, bars)
        if rows.validating:
            row.update({f"val_{k}": v for k, v in validate(trainee.net, data, rows, options.device).items()})
        result.history.append(row)
        score = row.get("val_score", float(epoch))  # without validation: the last epoch is the best
        if score > best.score:
            best.score, result.best_epoch = score, epoch
            best.state = _weights(trainee.net)
        log(f"epoch {epoch}: loss {row['loss']:.3f}"
            + (", " + _describe({k[4:]: v for k, v in row.items() if k.startswith("val_")}) if rows.validating else "")
            + f" ({row['seconds']:.0f} s)")
        save_checkpoint(options, trainee, best, result)
    result.seconds_training = time.perf_counter() - t_train


def save_checkpoint(options: TrainEmbedderOptions, trainee: Trainee, best: BestSoFar,
                    result: TrainEmbedderResult) -> None:
    """Everything ``--resume`` needs, written atomically."""
    atomic_save({"options": options.resume_view(), "net": trainee.net.state_dict(), "head": trainee.head.state_dict(),
                 "optimizer": trainee.optimizer.state_dict(), "scheduler": trainee.scheduler.state_dict(),
                 "history": result.history, "start": result.start, "best_net": best.state,
                 "best_map": best.score, "best_epoch": result.best_epoch}, options.checkpoint_path)


def model_meta(options: TrainEmbedderOptions, data: AnimalSet, result: TrainEmbedderResult) -> dict:
    """What the stored model was trained on, how, and its validation figures."""
    return {"profile": options.profile.name, "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "images": len(data.labels), "identities": len(data.names), "train_images": result.train_images,
            "train_identities": result.train_identities, "val_images": result.val_images,
            "val_identities": result.val_identities, "probe_images": result.probe_images, "epochs_run": len(result.history),
            "best_epoch": result.best_epoch, "init": result.init, "start": result.start,
            "history": result.history, "options": options.resume_view(), "gallery": str(options.gallery or ""),
            "split": str(options.split or ""),
            "gallery_image_ids_sha256": hashlib.sha256("\n".join(sorted(data.image_ids)).encode()).hexdigest()}


def store_model(options: TrainEmbedderOptions, net: reid_model.ReidNet, best: BestSoFar, data: AnimalSet,
                db: GalleryDatabase, result: TrainEmbedderResult) -> None:
    """The best weights into the gallery database (and ``--out``); key and digest go to ``result``."""
    if best.state is not None:
        net.load_state_dict(best.state)
    net.cpu().eval()
    meta = model_meta(options, data, result)
    arrays = reid_model.to_arrays(net, meta)
    result.model_sha256 = reid_model.arrays_sha256(arrays)
    result.stored_key = model_key(options.profile.name)
    db.put_model(result.stored_key, MODEL_KIND, "trained-embedder", str(reid_model.FORMAT_VERSION),
                 result.model_sha256[:16], meta, arrays)
    if options.out is not None:
        atomic_save(reid_model.to_payload(net, meta), options.out)
        result.out = options.out


def train_embedder(options: TrainEmbedderOptions, table: PluginTable | None = None,
                   log: Callable[[str], None] = lambda line: None, progress: bool = False) -> TrainEmbedderResult:
    """Load and split the labelled photos, train (or resume), store the best model (see the module docstring)."""
    if options.init_note:
        log(options.init_note)
    check_options(options)
    table = table or PluginTable.discover()
    result = TrainEmbedderResult()
    resumed = checkpoint_to_resume(options) if options.resume else None
    components = build_components(options.profile, table, options.device)
    t0 = time.perf_counter()
    with GalleryDatabase(options.db) as db, Progress(progress) as bars:
        data = load_training_set(options, db, table, components, result.skipped, bars)
        result.seconds_loading = time.perf_counter() - t0
        log(f"loaded {len(data.labels)} photos of {len(data.names)} individuals as the animal "
            f"({options.profile.name!r} view, {pre_scaled_side(options)} px) in {result.seconds_loading:.0f} s")
        rows = split_rows(data, options, result)
        trainee = build_trainee(options, rows, result, data.landmark_names, orientation_classes(options, data))
        best = starting_point(options, trainee, resumed, data, rows, result, log)
        run_epochs(options, trainee, best, data, rows, result, bars, log)
        store_model(options, trainee.net, best, data, db, result)
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def options_from_profile(profile: Profile, **overrides) -> TrainEmbedderOptions:
    """Training options: the profile's ``[trained_embedder]`` defaults, then ``overrides`` (None = keep)."""
    s = profile.trained_embedder
    base = {} if s is None else {"backbone": s.backbone, "image_size": s.image_size, "epochs": s.epochs,
                                 "flip": s.flip, "method": s.method}
    base.update({k: v for k, v in overrides.items() if v is not None})
    if base.get("init") is not None:  # a model folder's config.json says what the user did not
        source = reid_model.init_source(base["init"])
        base["init"] = source.weights
        base["init_note"] = source.describe()
        if source.backbone is not None and overrides.get("backbone") not in (None, source.backbone):
            base["init_note"] += f"; its config.json is for {source.backbone}, not --backbone: not used"
        else:
            if source.backbone is not None:
                base["backbone"] = source.backbone
                reid_model.check_architecture(source.backbone, f"--init {source.weights.parent}: its config.json's")
            if overrides.get("image_size") is None and source.image_size is not None:
                base["image_size"] = source.image_size
            if source.mean is not None and source.std is not None:
                base["mean"], base["std"] = source.mean, source.std
    return dataclasses.replace(TrainEmbedderOptions(profile=profile, db=base.pop("db")), **base)
