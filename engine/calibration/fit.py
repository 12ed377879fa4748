"""Learned calibration and fusion: isotonic raw score → P(same individual), Powell-optimised
pipeline weights and the novelty threshold τ that maximise geo-mean(BAKS, BAUS).

Shapes: per pipeline, raw scores of the shortlisted pairs are float (N_q, B) with NaN where
a pair was not scored; ``rows`` int (N_q, B) are the gallery rows of those pairs.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from reid_engine.calibration.fusion import aggregate
from reid_engine.calibration.open_split import NotEnoughData
from reid_engine.metrics import baks, baus, geometric_mean, top_k_accuracy
from reid_engine.records import NEW_INDIVIDUAL

if TYPE_CHECKING:  # annotations only: calibration stays below the pipeline's modules
    from reid_engine.components import Components
    from reid_engine.registry.profiles import Profile
    from reid_engine.store.database import GalleryDatabase

MAX_KNOTS = 512


@dataclass
class IsotonicCalibrator:
    """Monotone map raw score → probability, strictly increasing between its knots.

    knots_x float (K,) increasing raw scores; knots_y float (K,) strictly increasing
    probabilities. Scores below/above the knots are clamped to the end values; a missing
    score (NaN: the pair was not scored) gets ``p_missing``, the share of true pairs among the
    unscored pairs of the fitting data (0 when there were none).
    """

    knots_x: np.ndarray
    knots_y: np.ndarray
    p_missing: float = 0.0

    @classmethod
    def fit(cls, scores: np.ndarray, hits: np.ndarray, eps: float = 1e-3) -> "IsotonicCalibrator":
        """Fit on raw scores (N,) and 0/1 labels (N,) (1 = same individual)."""
        from sklearn.isotonic import IsotonicRegression

        scores = np.asarray(scores, np.float64).ravel()
        hits = np.asarray(hits, np.float64).ravel()
        missing = ~np.isfinite(scores)
        p_missing = float(hits[missing].mean()) if missing.any() else 0.0
        scores, hits = scores[~missing], hits[~missing]
        if scores.size == 0 or np.unique(hits).size < 2:
            raise ValueError("calibration needs scored pairs of both kinds (same and different individuals)")
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, hits)
        knots = np.unique(scores)
        if knots.size > MAX_KNOTS:
            knots = np.unique(np.quantile(scores, np.linspace(0, 1, MAX_KNOTS)))
        y = iso.predict(knots)
        if knots.size == 1:
            return cls(knots, np.clip(y, 0, 1), p_missing)
        ramp = np.linspace(0.0, 1.0, knots.size)  # strictly increasing: breaks isotonic plateaus
        y = (1.0 - eps) * y + eps * ramp
        return cls(knots, y, p_missing)

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities with the shape of ``raw``."""
        raw = np.asarray(raw, np.float64)
        out = np.interp(np.nan_to_num(raw, nan=self.knots_x[0]), self.knots_x, self.knots_y)
        return np.where(np.isfinite(raw), out, self.p_missing)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.x": self.knots_x, f"{prefix}.y": self.knots_y, f"{prefix}.p_missing": np.array(self.p_missing)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> "IsotonicCalibrator":
        return cls(arrays[f"{prefix}.x"], arrays[f"{prefix}.y"], float(arrays[f"{prefix}.p_missing"]))


def expected_calibration_error(probabilities: np.ndarray, hits: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """ECE over equal-width bins, and the per-bin table (mean confidence, accuracy, count)."""
    p = np.asarray(probabilities, np.float64).ravel()
    h = np.asarray(hits, np.float64).ravel()
    ok = np.isfinite(p)
    p, h = p[ok], h[ok]
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            table.append({"lo": edges[b], "hi": edges[b + 1], "confidence": float("nan"), "accuracy": float("nan"), "count": 0})
            continue
        conf, acc = float(p[sel].mean()), float(h[sel].mean())
        ece += sel.mean() * abs(conf - acc)
        table.append({"lo": edges[b], "hi": edges[b + 1], "confidence": conf, "accuracy": acc, "count": int(sel.sum())})
    return float(ece), table


def normalise_weights(theta: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 (so a fused score stays a probability)."""
    w = np.abs(np.asarray(theta, np.float64))
    total = w.sum()
    return w / total if total > 0 else np.full_like(w, 1.0 / len(w))


def fuse_weighted(probabilities: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Σ_i w_i p_i with weights summing to 1; (P, N_q, B) → (N_q, B)."""
    return np.tensordot(normalise_weights(weights), np.stack(probabilities), axes=1)


@dataclass(frozen=True)
class OpenSetData:
    """What fitting τ and weights needs: per query its shortlisted rows and truth.

    rows int (N_q, B); identities[row] the label of a gallery row; truth (N_q,) identity or
    ``new_individual``; groups (N_q,) the true individual of every query (for BAUS balance).
    """

    rows: np.ndarray
    identities: Sequence[str]
    truth: Sequence[str]
    groups: Sequence[str]


def top_identities(fused: np.ndarray, data: OpenSetData, how: str) -> tuple[list[str], np.ndarray]:
    """Best identity and its aggregated probability per query."""
    names, scores = [], np.zeros(fused.shape[0])
    for q in range(fused.shape[0]):
        ranked = aggregate(fused[q], data.rows[q], data.identities, how)
        names.append(ranked[0].identity if ranked else NEW_INDIVIDUAL)
        scores[q] = ranked[0].score if ranked else 0.0
    return names, scores


def open_set_scores(names: Sequence[str], top: np.ndarray, tau: float, data: OpenSetData) -> dict[str, float]:
    predicted = [n if s >= tau else NEW_INDIVIDUAL for n, s in zip(names, top)]
    k = baks(data.truth, predicted)
    u = baus(data.truth, predicted, unknown_groups=data.groups)
    return {"BAKS": k, "BAUS": u, "geo_mean": geometric_mean(k, u)}


def best_threshold(names: Sequence[str], top: np.ndarray, data: OpenSetData) -> tuple[float, dict[str, float]]:
    """τ maximising geo-mean(BAKS, BAUS) over the midpoints between observed top scores.

    Vectorised over all candidate τ: a known query adds 1/(|C|·n_c) to BAKS when its top
    identity is right and its score ≥ τ; an unknown query adds 1/(|U|·n_u) to BAUS when its
    score < τ. Ties in geo-mean go to the middle of the best plateau (a margin both ways).
    """
    top = np.asarray(top, np.float64)
    values = np.unique(np.concatenate([[0.0, 1.0], top]))
    candidates = np.concatenate([[0.0], (values[:-1] + values[1:]) / 2, [1.0 + 1e-9]])
    truth = list(data.truth)
    known = np.array([t != NEW_INDIVIDUAL for t in truth])
    right = np.array([n == t for n, t in zip(names, truth)]) & known
    k_count: dict[str, int] = defaultdict(int)
    u_count: dict[str, int] = defaultdict(int)
    for t, g in zip(truth, data.groups):
        if t != NEW_INDIVIDUAL:
            k_count[t] += 1
        else:
            u_count[g] += 1
    w_known = np.array([1.0 / (len(k_count) * k_count[t]) if r else 0.0 for t, r in zip(truth, right)])
    w_unknown = np.array([1.0 / (len(u_count) * u_count[g]) if t == NEW_INDIVIDUAL else 0.0
                          for t, g in zip(truth, data.groups)])
    above = top[:, None] >= candidates[None, :]  # (N_q, M)
    baks_t = w_known @ above if k_count else np.full(len(candidates), np.nan)
    baus_t = w_unknown @ ~above if u_count else np.full(len(candidates), np.nan)
    geo = np.sqrt(np.clip(baks_t, 0, None) * np.clip(baus_t, 0, None))
    if np.all(np.isnan(geo)):
        return 0.5, {"BAKS": float("nan"), "BAUS": float("nan"), "geo_mean": float("nan")}
    best = np.nanmax(geo)
    tau = float(np.median(candidates[geo >= best - 1e-12]))
    return tau, open_set_scores(names, top, tau, data)


def fit_weights(probabilities: Sequence[np.ndarray], data: OpenSetData, how: str, seed: int = 0,
                restarts: int = 4) -> tuple[np.ndarray, float, dict[str, float]]:
    """Powell search of pipeline weights maximising geo-mean at the best τ for those weights.

    Returns (normalised weights (P,), τ, scores). With one pipeline the weight is 1.
    """
    from scipy.optimize import minimize

    n = len(probabilities)
    stack = np.stack(probabilities)

    def evaluate(theta: np.ndarray) -> tuple[float, float, dict[str, float]]:
        fused = np.tensordot(normalise_weights(theta), stack, axes=1)
        names, top = top_identities(fused, data, how)
        tau, scores = best_threshold(names, top, data)
        return scores["geo_mean"], tau, scores

    if n == 1:
        g, tau, scores = evaluate(np.ones(1))
        return np.ones(1), tau, scores
    rng = np.random.default_rng(seed)
    starts = [np.full(n, 1.0 / n)] + [rng.dirichlet(np.ones(n)) for _ in range(restarts - 1)]
    best = (-1.0, None)
    for start in starts:
        res = minimize(lambda th: -np.nan_to_num(evaluate(th)[0]), start, method="Powell",
                       options={"xtol": 1e-3, "ftol": 1e-4, "maxfev": 400})
        value = -float(res.fun)
        if value > best[0] + 1e-9:
            best = (value, normalise_weights(res.x))
    weights = best[1]
    _, tau, scores = evaluate(weights)
    return weights, tau, scores


@dataclass
class FittedCalibration:
    """What ``reid-engine calibrate`` stores and later runs use: per-pipeline calibrators,
    fusion weights (P,) summing to 1, the threshold τ and the identity aggregation."""

    pipelines: list[str]
    calibrators: dict[str, IsotonicCalibrator]
    weights: np.ndarray
    threshold: float
    aggregate: str
    top: IsotonicCalibrator | None = None  # aggregated score → P(top identity is right)

    def confidence(self, aggregated: np.ndarray) -> np.ndarray:
        """Identity-level probability that an identity with this aggregated score is right."""
        return self.top.predict(aggregated) if self.top is not None else np.asarray(aggregated, np.float64)

    @property
    def confidence_threshold(self) -> float:
        """τ expressed on the confidence scale (the map is strictly increasing, so decisions agree)."""
        return float(self.confidence(np.array([self.threshold]))[0])

    def probabilities(self, raw: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.calibrators[name].predict(raw[name]) for name in self.pipelines]

    def fuse(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        return fuse_weighted(self.probabilities(raw), self.weights)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "pipelines": np.array(self.pipelines), "weights": np.asarray(self.weights, np.float64),
            "threshold": np.array(self.threshold), "aggregate": np.array(self.aggregate),
        }
        for i, name in enumerate(self.pipelines):
            out.update(self.calibrators[name].to_arrays(f"cal{i}"))
        if self.top is not None:
            out.update(self.top.to_arrays("top"))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "FittedCalibration":
        names = [str(n) for n in arrays["pipelines"]]
        top = IsotonicCalibrator.from_arrays(arrays, "top") if "top.x" in arrays else None
        return cls(names, {n: IsotonicCalibrator.from_arrays(arrays, f"cal{i}") for i, n in enumerate(names)},
                   np.asarray(arrays["weights"], np.float64), float(arrays["threshold"]), str(arrays["aggregate"]), top)


# -- the fitted calibration of a profile, in the gallery database ----------------------------
GLOBAL_SOURCE = "global-embedding"  # the shortlist cosine, fused like a pipeline once calibrated


def calibration_key(profile: Profile, components: Components) -> str:
    """Which fitted calibration belongs to this profile's shortlist and pipelines."""
    parts = [profile.name, "|".join(components.embedder.cache_id), str(profile.shortlist.top_b)]
    if profile.shortlist.screen:  # a screened shortlist holds other pairs
        parts.append(f"screen|{profile.shortlist.screen}|{profile.shortlist.screen_b}")
    if components.trained is not None:  # a retrained embedder invalidates the calibration
        parts.append("trained|" + "|".join(components.trained.cache_id))
    for p in components.pipelines:
        parts.append("|".join([p.name, *p.extractor.cache_id, *p.matcher.cache_id, *p.scorer.cache_id]))
    if components.rerank is not None:  # one more evidence source
        r = components.rerank
        parts.append(f"rerank|{r.name}|{r.pipeline.name}|{r.top_k}|{r.min_inliers}")
    return "calibration-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def load_calibration(db: GalleryDatabase, profile: Profile, components: Components) -> FittedCalibration | None:
    arrays = db.get_model(calibration_key(profile, components))
    return FittedCalibration.from_arrays(arrays) if arrays is not None else None


@dataclass
class OpenSetFit:
    """What :func:`fit_open_set` found: the calibration to store and how every method did.

    ``probabilities`` (per source, float (N_q, B)) are the isotonic ones, ``before`` the
    profile's (logistic) ones; ``methods`` one dict per method (each source alone, mean
    fusion, Powell fusion) with BAKS, BAUS, geo-mean, top-1, τ and weights.
    """

    fitted: FittedCalibration
    sources: list[str]
    before: list[np.ndarray]
    probabilities: list[np.ndarray]
    methods: list[dict]
    ece_before: dict[str, float]
    ece_after: dict[str, float]


def fit_open_set(raw: dict[str, np.ndarray], before: dict[str, np.ndarray], hits: np.ndarray, data: OpenSetData,
                 how: str, seed: int = 0) -> OpenSetFit:
    """Isotonic calibrator per evidence source, then Powell weights and τ maximising geo-mean(BAKS, BAUS).

    ``raw`` / ``before``: per source (in order) raw scores and the profile's probabilities,
    float (N_q, B); ``hits`` float (N_q, B): 1 where the shortlisted row is the query's identity.
    A source that cannot be fitted (one class only) raises NotEnoughData.
    """
    names = list(raw)
    calibrators, probabilities, ece_before, ece_after = {}, [], {}, {}
    for name in names:
        try:
            cal = IsotonicCalibrator.fit(raw[name].ravel(), hits.ravel())
        except ValueError as exc:
            raise NotEnoughData(f"{name!r}: {exc}; nothing was stored, runs keep the profile's "
                                "calibration and threshold. Calibrate on a larger labelled gallery.") from None
        calibrators[name] = cal
        prob = cal.predict(raw[name])
        probabilities.append(prob)
        ece_before[name], _ = expected_calibration_error(before[name], hits)
        ece_after[name], _ = expected_calibration_error(prob, hits)

    def method(label: str, fused: np.ndarray, weights: np.ndarray, tau: float | None = None) -> dict:
        top_names, top = top_identities(fused, data, how)
        if tau is None:
            tau, scores = best_threshold(top_names, top, data)
        else:
            scores = open_set_scores(top_names, top, tau, data)
        ranked = [[s.identity for s in aggregate(fused[q], data.rows[q], data.identities, how)]
                  for q in range(fused.shape[0])]
        return {"method": label, **scores, "top1": top_k_accuracy(data.truth, ranked, 1), "tau": tau,
                "weights": [round(float(w), 4) for w in weights]}

    n = len(names)
    methods = [method(f"{name} alone", probabilities[i], np.eye(n)[i]) for i, name in enumerate(names)]
    methods.append(method("mean fusion (WildFusion)", fuse_weighted(probabilities, np.ones(n)), np.ones(n) / n))
    weights, tau, _ = fit_weights(probabilities, data, how, seed=seed)
    methods.append(method("Powell fusion", fuse_weighted(probabilities, weights), weights, tau))
    fitted = FittedCalibration(names, calibrators, weights, tau, how)
    top_names, top = top_identities(fitted.fuse(raw), data, how)
    right = np.array([n == t for n, t in zip(top_names, data.truth)], float)
    if 0 < right.sum() < len(right):  # identity level: aggregated score → P(top identity is right)
        fitted.top = IsotonicCalibrator.fit(top, right)
    return OpenSetFit(fitted, names, [before[n] for n in names], probabilities, methods, ece_before, ece_after)


def store_calibration(db: GalleryDatabase, profile: Profile, components: Components, fit: OpenSetFit, split: dict,
                      raw: dict[str, np.ndarray], hits: np.ndarray, query_image_ids: list[str]) -> None:
    """Store ``fit`` in the gallery database under :func:`calibration_key`, with the data it was
    fitted on (raw scores per source, hits, query image ids) and what it was fitted on (``split``)."""
    fitted_on = {**split, "profile": profile.name, "methods": fit.methods,
                 "ece_before": fit.ece_before, "ece_after": fit.ece_after}
    arrays = fit.fitted.to_arrays()
    for i, name in enumerate(fit.sources):
        arrays[f"data.raw{i}"] = raw[name].astype(np.float32)
    arrays["data.hits"] = hits.astype(np.uint8)
    arrays["data.query_image_ids"] = np.array(query_image_ids)
    db.put_model(calibration_key(profile, components), "calibration", profile.name, "1",
                 hashlib.sha256(json.dumps(split, sort_keys=True).encode()).hexdigest()[:16],
                 json.loads(json.dumps(fitted_on, default=float)), arrays)
