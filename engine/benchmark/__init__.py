"""``reid-engine benchmark``: the engine measured over datasets × profiles × splits.

``datasets`` resolves what ``--dataset`` names, ``splits`` makes or reads the splits,
``cells`` runs one (dataset, profile, split) cell with the real engine in its own database,
``harness`` runs them all (resumably), ``report`` writes results.md and the plots, and
``compare`` tells what moved beyond noise between two results.json files.
"""
