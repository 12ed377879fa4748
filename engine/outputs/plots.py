"""PNG plots for the user: BAKS/BAUS/geo-mean against τ, and a reliability diagram with ECE."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from reid_engine.calibration.fit import (
    OpenSetData,
    OpenSetFit,
    expected_calibration_error,
    open_set_scores,
    top_identities,
)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_threshold_sweep(path: Path, names: Sequence[str], top: np.ndarray, data: OpenSetData, tau: float) -> Path:
    plt = pyplot()
    upper = min(1.0, float(np.max(top)) * 1.05) if len(top) else 1.0  # zoom to where decisions change
    taus = np.linspace(0, max(upper, 1e-3), 201)
    curves = {k: [] for k in ("BAKS", "BAUS", "geo_mean")}
    for t in taus:
        s = open_set_scores(names, top, float(t), data)
        for k in curves:
            curves[k].append(s[k])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for k, style in (("BAKS", "-"), ("BAUS", "--"), ("geo_mean", "-")):
        ax.plot(taus, curves[k], style, label=k, linewidth=2.5 if k == "geo_mean" else 1.5)
    ax.axvline(tau, color="grey", linestyle=":", label=f"τ = {tau:.3f}")
    ax.set_xlabel("threshold τ on the fused probability")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.02)
    ax.set_title("Known/new decision against τ (calibration split)")
    ax.legend(loc="lower center")
    return save_figure(plt, fig, path)


def plot_reliability(path: Path, before: Sequence[np.ndarray], after: Sequence[np.ndarray], hits: np.ndarray,
                     names: Sequence[str], bins: int = 10) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.5), dpi=120, squeeze=False)
    for ax, name, b, a in zip(axes[0], names, before, after):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        for probs, label in ((b, "before (profile logistic; cosine clipped)"), (a, "isotonic, on its fitting pairs")):
            ece, table = expected_calibration_error(probs, hits, bins)
            xs = [row["confidence"] for row in table if row["count"]]
            ys = [row["accuracy"] for row in table if row["count"]]
            ax.plot(xs, ys, marker="o", label=f"{label} (ECE {ece:.3f})")
        ax.set_xlabel("predicted P(same individual)")
        ax.set_ylabel("observed share of same-individual pairs")
        ax.set_title(f"Reliability: {name}")
        ax.legend(loc="upper left")
    return save_figure(plt, fig, path)


def write_calibration_plots(folder: Path, fit: OpenSetFit, raw: dict[str, np.ndarray], hits: np.ndarray,
                            data: OpenSetData) -> dict[str, Path]:
    """``reid-engine calibrate``'s plots of ``fit``: threshold-sweep.png and reliability.png in ``folder``."""
    fitted = fit.fitted
    names, top = top_identities(fitted.fuse(raw), data, fitted.aggregate)
    return {"threshold": plot_threshold_sweep(folder / "threshold-sweep.png", names, top, data, fitted.threshold),
            "reliability": plot_reliability(folder / "reliability.png", fit.before, fit.probabilities, hits,
                                            fit.sources)}
