"""Distinctiveness weighting of matches, fitted on the gallery (LNBNN in HotSpotter's spirit).

A feature that matches many individuals says little about which one this is. For a query
feature q matched to feature g of a gallery image of individual I, the weight is

    w = max(0, d_other(q, I) - ||q - g||)

where ``d_other`` is the distance from q to the nearest gallery feature of any *other*
individual: a match only counts by how much closer it is than the best explanation by
someone else. Descriptors are compared L2-normalised, so w lies in [0, 2].

The gallery side is a sample: the ``per_image`` strongest features (detector score) of each
gallery image, with their individuals, kept as one matrix (M, D) in the database's models
table, refitted whenever the gallery or the extractor changes. Each query looks up its
``neighbours`` nearest sample features once (N, k); d_other for an individual is the first
of them from someone else (the k-th distance when all k are that individual's: a lower
bound). With a sample, d_other is an over-estimate of the full gallery's, so weights are a
little generous, evenly for every individual.

A pipeline's score with distinctiveness is the sum of the weights of the matches its scorer
counts (``scorer.inliers()``; all matches for a scorer without it): RANSAC inliers, matches
above a confidence, ...; so it works with every local pipeline. Scores change scale (a
strong pair scores tens rather than hundreds): set the pipeline's calibration to match, or
run ``reid-engine calibrate``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from reid_engine.plugin_adapters import adapt
from reid_engine.records import LocalFeatures, Matches

if TYPE_CHECKING:
    from reid_engine.components import Built
    from reid_engine.registry.profiles import DistinctivenessSettings
    from reid_engine.store.features import FeatureCache

MODEL_KIND = "distinctiveness"
VERSION = "1"


@dataclass
class Neighbours:
    """A query's nearest gallery-sample features: ``dist`` float32 (N, k) ascending, ``label`` int64 (N, k)."""

    dist: np.ndarray
    label: np.ndarray

    def other(self, label: int) -> np.ndarray:
        """float32 (N,): distance of each query feature to the nearest sample feature not of ``label``."""
        if self.dist.shape[1] == 0:
            return np.full(self.dist.shape[0], 2.0, np.float32)
        not_it = self.label != label
        first = np.where(not_it.any(1), not_it.argmax(1), self.dist.shape[1] - 1)
        return self.dist[np.arange(len(first)), first]


@dataclass
class DistinctivenessModel:
    """The gallery sample: ``desc`` float32 (M, D) L2-normalised, ``label`` int64 (M,) into ``names``."""

    desc: np.ndarray
    label: np.ndarray
    names: list[str]
    neighbours_k: int

    def label_of(self, identity: str) -> int:
        try:
            return self.names.index(identity)
        except ValueError:
            return -1

    def neighbours(self, desc: np.ndarray, block_floats: int = 1 << 26) -> Neighbours:
        """Nearest sample features of ``desc`` float (N, D) by L2 distance of unit vectors.

        Query features go ``block_floats`` / M at a time (at most 512), so the similarity block
        (chunk, M) stays within 256 MiB however large the gallery sample (M) grows (blocks of 512
        up to a sample of 131,072 features: 1,024 images at per_image = 128).
        """
        import torch

        n, k = len(desc), min(self.neighbours_k, len(self.desc))
        if n == 0 or k == 0:
            return Neighbours(np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64))
        chunk = max(1, min(512, block_floats // len(self.desc)))
        sample = torch.from_numpy(self.desc)
        dist, idx = [], []
        q_all = torch.from_numpy(_unit(desc))
        for start in range(0, n, chunk):
            sim = q_all[start:start + chunk] @ sample.T
            top, at = sim.topk(k, dim=1)
            dist.append(torch.sqrt(torch.clamp(2.0 - 2.0 * top, min=0.0)).numpy())
            idx.append(at.numpy())
        at = np.concatenate(idx)
        return Neighbours(np.concatenate(dist).astype(np.float32), self.label[at])

    def weights(self, fq: LocalFeatures, fg: LocalFeatures, matches: Matches, neighbours: Neighbours,
                identity: str) -> np.ndarray:
        """float32 (M,): each match's weight ``max(0, d_other - ||q - g||)`` against individual ``identity``."""
        if len(matches) == 0:
            return np.zeros(0, np.float32)
        q = _unit(fq.desc[matches.idx[:, 0]])
        g = _unit(fg.desc[matches.idx[:, 1]])
        d_match = np.linalg.norm(q - g, axis=1)
        d_other = neighbours.other(self.label_of(identity))[matches.idx[:, 0]]
        return np.maximum(0.0, d_other - d_match).astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"desc": self.desc, "label": self.label, "names": np.array(self.names, dtype=str),
                "k": np.array([self.neighbours_k])}

    @staticmethod
    def from_arrays(a: dict[str, np.ndarray]) -> "DistinctivenessModel":
        return DistinctivenessModel(a["desc"], a["label"], [str(x) for x in a["names"]], int(a["k"][0]))


def weighted_score(scorer, model: DistinctivenessModel, fq: LocalFeatures, fg: LocalFeatures, matches: Matches,
                   neighbours: Neighbours, identity: str) -> float:
    """Sum of the distinctiveness weights of the matches ``scorer`` counts (one pair, its query's
    ``neighbours`` at hand; a run defers them: :func:`weighted_scores`)."""
    pair = counted(scorer, model, fq, fg, matches, identity)
    return pair.weight_sum(neighbours.other(pair.label)[pair.rows])


@dataclass
class Counted:
    """The matches a pair's scorer counts, waiting for their distinctiveness weights.

    rows     int64 (K,): the counted matches' query features
    d_match  float32 (K,): their distances ``||q - g||`` (unit descriptors)
    label    the gallery individual's position in the model's ``names`` (-1: not in the sample)
    """

    rows: np.ndarray
    d_match: np.ndarray
    label: int

    def weight_sum(self, d_other: np.ndarray) -> float:
        """Sum of ``max(0, d_other - d_match)``; ``d_other`` float (K,) aligned with ``rows``."""
        if len(self.rows) == 0:
            return 0.0
        return float(np.maximum(0.0, d_other - self.d_match).astype(np.float32).sum())


def counted(scorer, model: DistinctivenessModel, fq: LocalFeatures, fg: LocalFeatures, matches: Matches,
            identity: str) -> Counted:
    """What :func:`weighted_score` needs of a pair besides the query's neighbours, so that these can
    be looked up later for only the query features some pair counts (:func:`weighted_scores`)."""
    none = Counted(np.zeros(0, np.int64), np.zeros(0, np.float32), model.label_of(identity))
    if len(matches) == 0:
        return none
    keep = adapt("scorer", scorer).inliers(fq, fg, matches)
    if keep is None:  # the scorer has no inlier set: every match counts
        keep = np.ones(len(matches), bool)
    if not keep.any():
        return none
    idx = matches.idx[keep]
    d_match = np.linalg.norm(_unit(fq.desc[idx[:, 0]]) - _unit(fg.desc[idx[:, 1]]), axis=1).astype(np.float32)
    return Counted(idx[:, 0].astype(np.int64), d_match, none.label)


def weighted_scores(model: DistinctivenessModel, query_desc: np.ndarray, pairs: Sequence[Counted]) -> np.ndarray:
    """float64 (len(pairs),): each pair's sum of distinctiveness weights, the pairs all of one query
    whose features are ``query_desc`` (N, D). The query's neighbours are looked up once, for the
    features some pair counts (on nyala-dev ~60 % of them): the sums of :func:`weighted_score`."""
    if not pairs:
        return np.zeros(0)
    rows, position = np.unique(np.concatenate([p.rows for p in pairs]), return_inverse=True)
    neighbours = model.neighbours(query_desc[rows])
    other: dict[int, np.ndarray] = {}  # individual -> d_other of each looked-up feature
    out = np.zeros(len(pairs))
    start = 0
    for i, pair in enumerate(pairs):
        at = position[start:start + len(pair.rows)]
        start += len(pair.rows)
        if len(at):
            if pair.label not in other:
                other[pair.label] = neighbours.other(pair.label)
            out[i] = pair.weight_sum(other[pair.label][at])
    return out


def fit(features: Iterable[LocalFeatures | None], identities: Sequence[str],
        settings: "DistinctivenessSettings", seed: int = 0) -> DistinctivenessModel:
    """Sample ``settings.per_image`` strongest features of each gallery image (``features`` and
    ``identities`` aligned; None = unusable image) into a model. ``features`` is read once, in
    order, so it may be a generator: only the sample is kept in memory."""
    names = sorted(set(identities))
    position = {n: i for i, n in enumerate(names)}
    descs, labels = [], []
    dim = 0
    for f, ident in zip(features, identities):
        if f is None or len(f) == 0:
            continue
        dim = f.desc.shape[1]
        keep = np.argsort(-f.scores, kind="stable")[: settings.per_image]
        descs.append(_unit(f.desc[keep]))
        labels.append(np.full(len(keep), position[ident], np.int64))
    if not descs:
        return DistinctivenessModel(np.zeros((0, dim), np.float32), np.zeros(0, np.int64), names,
                                    settings.neighbours)
    return DistinctivenessModel(np.concatenate(descs), np.concatenate(labels), names, settings.neighbours)


def fitted(cache: "FeatureCache", extractor: "Built", gallery_hashes: Sequence[str], identities: Sequence[str],
           settings: "DistinctivenessSettings") -> DistinctivenessModel:
    """The model for this gallery and extractor: from the database when fitted before, else fitted and stored."""
    digest = hashlib.sha256("|".join(f"{h}:{i}" for h, i in zip(gallery_hashes, identities)).encode()).hexdigest()
    config = f"{settings.per_image}|{settings.neighbours}"
    key = hashlib.sha256(f"{MODEL_KIND}|{VERSION}|{'|'.join(extractor.cache_id)}|{config}|{digest}".encode()
                         ).hexdigest()[:40]
    stored = cache.db.get_model(key)
    if stored is not None:
        return DistinctivenessModel.from_arrays(stored)
    model = fit((cache.get(h, extractor) for h in gallery_hashes), identities, settings)  # one image at a time
    cache.db.put_model(key, MODEL_KIND, extractor.spec.name, VERSION, config,
                       {"gallery_images": len(gallery_hashes), "gallery_digest": digest,
                        "extractor": list(extractor.cache_id), "sample": int(len(model.desc))},
                       model.to_arrays())
    return model


def _unit(desc: np.ndarray) -> np.ndarray:
    desc = np.asarray(desc, np.float32)
    norm = np.linalg.norm(desc, axis=1, keepdims=True)
    return (desc / np.maximum(norm, 1e-12)).astype(np.float32)
