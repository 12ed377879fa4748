"""Evaluation metrics for open-set re-identification.

Pure functions over plain sequences (no I/O). Conventions shared by every function here:

* A query's *truth* is either a known identity (one present in the gallery) or
  :data:`~reid_engine.records.NEW_INDIVIDUAL` for an individual the gallery does not hold.
  A truth of ``None`` means "no ground truth" and the query is left out of every metric.
* A *ranking* is the list of candidate identities for a query, best first. Only the first
  occurrence of an identity counts (later repeats are ignored), so "the first k ranked
  identities" means the first k *distinct* identities.
* A metric that is undefined on its input (no known queries, no unknown queries, ...) is
  ``float('nan')``, never an exception and never a misleading 0.

The open-set metrics follow AnimalCLEF 2025: BAKS (balanced accuracy on known samples),
BAUS (balanced accuracy on unknown samples) and their geometric mean.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from reid_engine.records import NEW_INDIVIDUAL, Prediction

NAN = float("nan")

__all__ = [
    "baks",
    "baus",
    "evaluate",
    "geometric_mean",
    "mean_average_precision",
    "rand_index",
    "top_k_accuracy",
]


def _check_same_length(name_a: str, a: Sequence, name_b: str, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} differ in length: {len(a)} != {len(b)}")


def _is_known(truth: str | None) -> bool:
    return truth is not None and truth != NEW_INDIVIDUAL


def _distinct(ranking: Iterable[str]) -> list[str]:
    """The ranking with repeated identities dropped (first occurrence kept, order kept)."""
    seen: set[str] = set()
    out: list[str] = []
    for identity in ranking:
        if identity not in seen:
            seen.add(identity)
            out.append(identity)
    return out


def top_k_accuracy(truth: Sequence[str | None], ranked: Sequence[Sequence[str]], k: int) -> float:
    """Share of known queries whose true identity is among the first ``k`` ranked identities.

    Only queries whose truth is a known identity count (``new_individual`` and ``None`` are
    skipped); the known/new decision plays no part, only the ranking does. A ranking shorter
    than ``k`` is simply searched in full. Returns NaN when there is no known query.

    >>> top_k_accuracy(["a", "b", "new_individual"], [["a", "b"], ["a", "c"], ["a"]], 1)
    0.5
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_same_length("truth", truth, "ranked", ranked)
    hits = 0
    n = 0
    for t, ranking in zip(truth, ranked):
        if not _is_known(t):
            continue
        n += 1
        if t in _distinct(ranking)[:k]:
            hits += 1
    return hits / n if n else NAN


def mean_average_precision(truth: Sequence[str | None], ranked: Sequence[Sequence[str]]) -> float:
    """Mean over known queries of the average precision of their ranked identity list.

    A query has exactly one relevant item (its true identity) and an identity is counted once
    per ranking (repeats are dropped), so the average precision of one query reduces to
    ``1 / rank`` of the true identity (rank starting at 1), or 0 when it is absent from the
    ranking. This is therefore also the mean reciprocal rank over known queries.
    ``new_individual`` and ``None`` truths are skipped. Returns NaN when there is no known query.

    >>> mean_average_precision(["a", "b"], [["a", "b"], ["a", "c", "b"]])  # (1 + 1/3) / 2
    0.6666666666666666
    """
    _check_same_length("truth", truth, "ranked", ranked)
    total = 0.0
    n = 0
    for t, ranking in zip(truth, ranked):
        if not _is_known(t):
            continue
        n += 1
        distinct = _distinct(ranking)
        if t in distinct:
            total += 1.0 / (distinct.index(t) + 1)
    return total / n if n else NAN


def baks(truth: Sequence[str | None], predicted: Sequence[str]) -> float:
    """Balanced Accuracy on Known Samples (AnimalCLEF 2025).

    ``BAKS = (1/|C|) * sum_{c in C} TP_c / (TP_c + FN_c)`` where ``C`` is the set of identities
    that occur as the truth of a known query (truth not ``new_individual`` / ``None``),
    ``TP_c`` counts queries of class ``c`` predicted as ``c`` and ``FN_c`` those of class ``c``
    predicted as anything else -- including ``new_individual``. That is, the recall of every
    known identity, averaged with equal weight per identity (not per query), so an identity
    photographed 50 times weighs the same as one photographed once.
    Returns NaN when there is no known query.

    >>> baks(["a", "a", "a", "b"], ["a", "a", "x", "x"])  # (2/3 + 0/1) / 2
    0.3333333333333333
    """
    _check_same_length("truth", truth, "predicted", predicted)
    correct: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for t, p in zip(truth, predicted):
        if not _is_known(t):
            continue
        count[t] += 1
        if p == t:
            correct[t] += 1
    if not count:
        return NAN
    return sum(correct[c] / count[c] for c in count) / len(count)


def baus(
    truth: Sequence[str | None],
    predicted: Sequence[str],
    unknown_groups: Sequence[str | None] | None = None,
) -> float:
    """Balanced Accuracy on Unknown Samples (AnimalCLEF 2025).

    ``BAUS = (1/|U|) * sum_{u in U} TP_u / (TP_u + FN_u)`` over the unknown individuals ``U``:
    the queries whose truth is ``new_individual``. A query of an unknown individual is a true
    positive when it is predicted ``new_individual`` and a false negative otherwise.

    The truth of an unknown query is usually just ``new_individual``, without saying *which*
    new individual it shows. ``unknown_groups``, when given, is aligned with ``truth`` and names
    the true individual of each unknown query (entries of other queries are ignored), so the
    score is balanced per unknown individual as in the official AnimalCLEF metric. Without it --
    or for unknown queries whose group is ``None``, which then share one group -- all those
    unknown queries form a single class and BAUS is their plain accuracy.
    Returns NaN when there is no unknown query.

    >>> baus(["new_individual"] * 3, ["new_individual", "a", "a"], ["u1", "u2", "u2"])  # (1 + 0) / 2
    0.5
    """
    _check_same_length("truth", truth, "predicted", predicted)
    if unknown_groups is not None:
        _check_same_length("truth", truth, "unknown_groups", unknown_groups)
    correct: dict[object, int] = defaultdict(int)
    count: dict[object, int] = defaultdict(int)
    for i, (t, p) in enumerate(zip(truth, predicted)):
        if t != NEW_INDIVIDUAL:
            continue
        group = unknown_groups[i] if unknown_groups is not None else None
        # None is its own dict key, so ungrouped unknowns pool into one class.
        count[group] += 1
        if p == NEW_INDIVIDUAL:
            correct[group] += 1
    if not count:
        return NAN
    return sum(correct[g] / count[g] for g in count) / len(count)


def geometric_mean(baks: float, baus: float) -> float:
    """``sqrt(BAKS * BAUS)``, the AnimalCLEF 2025 ranking score; NaN if either is NaN.

    >>> geometric_mean(0.25, 1.0)
    0.5
    """
    if math.isnan(baks) or math.isnan(baus):
        return NAN
    if baks < 0 or baus < 0:
        raise ValueError(f"balanced accuracies must be >= 0, got {baks}, {baus}")
    return math.sqrt(baks * baus)


def rand_index(labels_true: Sequence[object], labels_pred: Sequence[object]) -> float:
    """Rand index between two clusterings of the same items (``sklearn.metrics.rand_score``).

    The share of item pairs on which the two labellings agree (same cluster in both, or
    different clusters in both); 1.0 for identical partitions whatever the label names.
    Returns NaN for empty input.

    >>> rand_index(["a", "a", "b"], [1, 1, 2])
    1.0
    """
    _check_same_length("labels_true", labels_true, "labels_pred", labels_pred)
    if len(labels_true) == 0:
        return NAN
    from sklearn.metrics import rand_score  # here: sklearn.metrics takes 1.1 s to import, a run never needs it

    # Map labels to ints so mixed label types (str vs None) never trip numpy's sorting.
    return float(rand_score(_codes(labels_true), _codes(labels_pred)))


def _codes(labels: Sequence[object]) -> list[int]:
    index: dict[object, int] = {}
    return [index.setdefault(label, len(index)) for label in labels]


def evaluate(
    predictions: Sequence[Prediction],
    top_ks: Sequence[int] = (1, 5),
    *,
    unknown_groups: Mapping[str, str] | None = None,
) -> dict[str, float | int]:
    """All metrics for predictions that carry a ground truth (``p.truth``).

    Predictions with ``truth is None`` are skipped; returns ``{}`` if none has a truth.
    The ranking of a query is the identities of ``p.candidates`` in rank order; its predicted
    label is ``p.prediction`` (an identity or ``new_individual``). ``unknown_groups`` optionally
    maps a query ``image_id`` to the true individual of an unknown query, to balance BAUS per
    individual (see :func:`baus`).

    Keys: ``n_queries``, ``n_known_queries``, ``n_unknown_queries`` (ints); ``top{k}`` for each
    ``k`` in ``top_ks``; ``mAP``; ``BAKS``; ``BAUS``; ``geo_mean``; ``known_accuracy_closed``
    (top-1 of the ranking on known queries, ignoring the new/known decision, i.e. closed-set
    accuracy -- equal to ``top1``, but present whatever ``top_ks`` is). Float metrics are NaN
    where undefined (e.g. BAUS with no unknown query).
    """
    scored = [p for p in predictions if p.truth is not None]
    if not scored:
        return {}
    truth = [p.truth for p in scored]
    ranked = [[c.identity for c in sorted(p.candidates, key=lambda c: c.rank)] for p in scored]
    predicted = [p.prediction for p in scored]
    groups = None
    if unknown_groups is not None:
        groups = [unknown_groups.get(p.image_id) for p in scored]

    n_known = sum(1 for t in truth if _is_known(t))
    n_unknown = sum(1 for t in truth if t == NEW_INDIVIDUAL)
    out: dict[str, float | int] = {
        "n_queries": len(scored),
        "n_known_queries": n_known,
        "n_unknown_queries": n_unknown,
    }
    for k in top_ks:
        out[f"top{k}"] = top_k_accuracy(truth, ranked, k)
    out["mAP"] = mean_average_precision(truth, ranked)
    b_known = baks(truth, predicted)
    b_unknown = baus(truth, predicted, groups)
    out["BAKS"] = b_known
    out["BAUS"] = b_unknown
    out["geo_mean"] = geometric_mean(b_known, b_unknown)
    out["known_accuracy_closed"] = top_k_accuracy(truth, ranked, 1)
    return out
