"""results.md and the PNG plots of a benchmark (from the cells' records, see ``cells``).

Plots, under ``plots/``:
  cmc-D-S.png          share of known queries whose individual is within the first k (k ≤ 20), a line per profile
  threshold-D-S.png    BAKS, BAUS and their geometric mean against the known/new threshold τ (splits with unknowns)
  reliability-D-S.png  reported top score against how often that identity is right, per profile (ECE in the legend)
  time-vs-accuracy.png seconds per query (features cached) against top-1, a point per cell
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from reid_engine.calibration.fit import expected_calibration_error
from reid_engine.files import write_atomic
from reid_engine.metrics import baks, baus, geometric_mean
from reid_engine.outputs.plots import pyplot, save_figure
from reid_engine.records import NEW_INDIVIDUAL

THRESHOLDS = np.linspace(0.0, 1.0, 101)


def safe_name(text: str) -> str:
    """``text`` usable as a file or folder name (runs of other characters become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "_"


def _groups(cells: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in cells:
        out[(c["dataset"], c["split"])].append(c)
    return out


def cmc(queries: list[dict], ranks: int = 20) -> np.ndarray:
    """float (ranks,): share of known queries whose identity is within the first k ranked."""
    known = [q for q in queries if q["truth"] not in (None, NEW_INDIVIDUAL)]
    if not known:
        return np.full(ranks, np.nan)
    hits = np.zeros(ranks)
    for q in known:
        if q["truth"] in q["ranked"][:ranks]:
            hits[q["ranked"].index(q["truth"]):] += 1
    return hits / len(known)


def threshold_sweep(queries: list[dict]) -> dict[str, np.ndarray]:
    """BAKS, BAUS, geo-mean (each float (len(THRESHOLDS),)) when the top identity is accepted at score ≥ τ."""
    truth = [q["truth"] for q in queries]
    groups = [q.get("group") for q in queries]
    out = {"BAKS": [], "BAUS": [], "geo_mean": []}
    for tau in THRESHOLDS:
        predicted = [q["ranked"][0] if q["ranked"] and q["score"] >= tau else NEW_INDIVIDUAL for q in queries]
        k, u = baks(truth, predicted), baus(truth, predicted, groups)
        out["BAKS"].append(k)
        out["BAUS"].append(u)
        out["geo_mean"].append(geometric_mean(k, u))
    return {k: np.array(v, float) for k, v in out.items()}


def write_plots(cells: list[dict], folder: Path) -> list[Path]:
    """Every plot of the module docstring for ``cells``; returns the files written."""
    plt = pyplot()
    written = []
    for (dataset, split), group in sorted(_groups(cells).items()):
        name = f"{safe_name(dataset)}-{safe_name(split)}"
        fig, ax = plt.subplots(figsize=(6, 4))
        for c in group:
            curve = cmc(c["queries"])
            ax.plot(np.arange(1, len(curve) + 1), curve, marker=".", label=f"{c['profile']} (top-1 {curve[0]:.2f})")
        ax.set(xlabel="rank k", ylabel="known queries with their individual in the first k", ylim=(0, 1.02),
               title=f"CMC · {dataset} · {split}", xticks=[1, 5, 10, 15, 20])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(save_figure(plt, fig, Path(folder) / f"cmc-{name}.png"))

        if any(q["truth"] == NEW_INDIVIDUAL for c in group for q in c["queries"]):
            fig, ax = plt.subplots(figsize=(9, 4.5))
            for i, c in enumerate(group):
                sweep = threshold_sweep(c["queries"])
                colour = f"C{i}"
                ax.plot(THRESHOLDS, sweep["geo_mean"], color=colour, label=f"{c['profile']} geo-mean")
                ax.plot(THRESHOLDS, sweep["BAKS"], color=colour, ls="--", lw=1, label=f"{c['profile']} BAKS")
                ax.plot(THRESHOLDS, sweep["BAUS"], color=colour, ls=":", lw=1, label=f"{c['profile']} BAUS")
                tau = c["steps"]["run"].get("threshold")
                if tau is not None and math.isfinite(tau):
                    ax.axvline(tau, color=colour, alpha=0.4)
            ax.set(xlabel="threshold τ on the top score (vertical line: the one used)", ylabel="score", ylim=(0, 1.02),
                   title=f"open set · {dataset} · {split} (solid geo-mean, dashed BAKS, dotted BAUS)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            written.append(save_figure(plt, fig, Path(folder) / f"threshold-{name}.png"))

        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], color="grey", lw=1)
        for c in group:
            conf = np.array([q["score"] for q in c["queries"]])
            right = np.array([bool(q["ranked"]) and q["truth"] not in (None, NEW_INDIVIDUAL)
                              and q["ranked"][0] == q["truth"] for q in c["queries"]], float)
            ece, table = expected_calibration_error(conf, right)
            bins = [b for b in table if b.get("count", 0) > 0]
            line, = ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], lw=1,
                            label=f"{c['profile']} (ECE {ece:.3f})")
            ax.scatter([b["confidence"] for b in bins], [b["accuracy"] for b in bins], color=line.get_color(),
                       s=[12 + 200 * b["count"] / len(conf) for b in bins])  # marker area ~ queries in the bin
        ax.set(xlabel="reported score of the top identity (marker area: queries)", ylabel="how often it is right",
               xlim=(0, 1), ylim=(0, 1),
               title=f"reliability · {dataset} · {split}")
        ax.legend(fontsize=8)
        written.append(save_figure(plt, fig, Path(folder) / f"reliability-{name}.png"))

    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [max(c["s_per_query"], 1e-3) for c in cells]
    profiles = list(dict.fromkeys(c["profile"] for c in cells))
    for x, c in zip(xs, cells):
        y = c["metrics"].get("top1", float("nan"))
        ax.scatter([x], [y], color=f"C{profiles.index(c['profile']) % 10}",
                   marker="o" if c["split"] == "closed" else "s")
        ax.annotate(f"{c['dataset']}/{c['split']}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for i, name in enumerate(profiles):
        ax.scatter([], [], color=f"C{i % 10}", label=name)
    if xs and max(xs) / min(xs) > 10:  # several decades: a log axis
        ax.set_xscale("log")
    ax.set_xlim(left=0 if ax.get_xscale() == "linear" else None)
    ax.set(xlabel="seconds per query (features cached)", ylabel="top-1", ylim=(0, 1.02),
           title="time against accuracy (circle: closed split, square: others)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    written.append(save_figure(plt, fig, Path(folder) / "time-vs-accuracy.png"))
    return written


def _f(value, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def write_results_md(results: dict, path: Path, plots: list[Path]) -> Path:
    """The tables a person reads: per split, datasets as rows and profiles as columns."""
    cells = results["cells"]
    profiles = list(dict.fromkeys(c["profile"] for c in cells))
    m = results["machine"]
    lines = ["# reid-engine benchmark", "",
             f"`{results['command']}` · commit `{results.get('git_commit')}` · {m['cpus_usable']} CPU core(s), "
             f"{m['processor']}, GPU: {m['cuda'] or 'none'} · reid-engine {results['versions'].get('reid-engine')}, "
             f"torch {results['versions'].get('torch')}", ""]
    for split in dict.fromkeys(c["split"] for c in cells):
        rows = [c for c in cells if c["split"] == split]
        datasets = list(dict.fromkeys(c["dataset"] for c in rows))
        by = {(c["dataset"], c["profile"]): c for c in rows}
        lines += [f"## split: {split}", "", "top-1 / top-5 / mAP (ranking over the first 20 identities)", "",
                  "| dataset | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]
        for d in datasets:
            lines.append(f"| {d} | " + " | ".join(
                _metrics(by.get((d, p)), ("top1", "top5", "mAP")) for p in profiles) + " |")
        if any(c["metrics"].get("n_unknown_queries") for c in rows):
            lines += ["", "BAKS / BAUS / geo-mean (known/new decided at the cell's threshold)", "",
                      "| dataset | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]
            for d in datasets:
                lines.append(f"| {d} | " + " | ".join(
                    _metrics(by.get((d, p)), ("BAKS", "BAUS", "geo_mean")) for p in profiles) + " |")
        lines.append("")
    lines += ["## every cell", "",
              "| dataset | profile | split | queries (known/unknown) | top-1 | top-5 | mAP | BAKS | BAUS | geo | ECE "
              "| shortlist recall | s/query | cell s | peak MB | calibrated | split from |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        mt = c["metrics"]
        lines.append(
            f"| {c['dataset']} | {c['profile']} | {c['split']} | {mt.get('n_known_queries', 0)}/"
            f"{mt.get('n_unknown_queries', 0)} | {_f(mt.get('top1'))} | {_f(mt.get('top5'))} | {_f(mt.get('mAP'))} | "
            f"{_f(mt.get('BAKS'))} | {_f(mt.get('BAUS'))} | {_f(mt.get('geo_mean'))} | {_f(c.get('ece'))} | "
            f"{_f(c.get('shortlist_recall'))} | {_f(c['s_per_query'], 2)} | {c['seconds']:.0f} | "
            f"{c['peak_rss_mb']:.0f} | {'yes' if c['calibrated'] else 'no'} | {c['split_source']} |")
    for f in results.get("failed", []):
        lines.append(f"| {f['dataset']} | {f['profile']} | {f['split']} | failed: {f['error']} |"
                     + " |" * 12)
    pooled = [c for c in cells if c.get("metrics_per_photo")]
    if pooled:
        lines += ["", "## sequences identified together", "",
                  "| dataset | profile | split | each photo alone: top-1 / top-5 / geo | sequence pooled: top-1 / top-5 / geo |",
                  "|---|---|---|---|---|"]
        for c in pooled:
            lines.append(f"| {c['dataset']} | {c['profile']} | {c['split']} | "
                         f"{' / '.join(_f(c['metrics_per_photo'].get(k)) for k in ('top1', 'top5', 'geo_mean'))} | "
                         f"{' / '.join(_f(c['metrics'].get(k)) for k in ('top1', 'top5', 'geo_mean'))} |")
    lines += ["", "## each stage alone", "", "| dataset | profile | split | shortlist recall@B | stage: top-1 / top-5 / mAP |",
              "|---|---|---|---|---|"]
    for c in cells:
        stages = dict(c.get("stages") or {})
        short = stages.pop("shortlist", {})
        b = short.get("B")
        recall = f"{_f(short.get(f'recall@{b}'))} (B = {b})" if b else "–"
        alone = "; ".join(f"{name} {_f(v.get('top1'))} / {_f(v.get('top5'))} / {_f(v.get('mAP'))}"
                          for name, v in stages.items())
        lines.append(f"| {c['dataset']} | {c['profile']} | {c['split']} | {recall} | {alone or '–'} |")
    lines += ["", "s/query: shortlist and matching time per query with every photo's features cached; cell s: the "
              "whole cell (features, training, calibration, run); peak MB: the cell process's peak resident memory.",
              "", "## plots", ""]
    lines += [f"- [{p.name}](plots/{p.name})" for p in plots]
    write_atomic(Path(path), ("\n".join(lines) + "\n").encode())
    return Path(path)


def _metrics(cell: dict | None, keys: tuple[str, ...]) -> str:
    if cell is None:
        return "–"
    return " / ".join(_f(cell["metrics"].get(k)) for k in keys)
