"""Compare two profiles' cells of benchmark results with `--compare`'s paired / binomial noise.

    python benchmarks/experiments/compare_profiles.py OLD_PROFILE NEW_PROFILE RESULTS.json [MORE.json ...]

`reid-engine benchmark --compare` pairs cells of two runs by (dataset, profile, split); this
pairs the cells of two *profiles* (by dataset and split), from one results.json or several
(e.g. the baseline from one run, the variant from another). Prints what `--compare` prints.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from reid_engine.benchmark.compare import compare, describe, load_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old_profile")
    ap.add_argument("new_profile")
    ap.add_argument("results", nargs="+", type=Path)
    args = ap.parse_args()
    runs = [load_results(p) for p in args.results]
    cells = [c for r in runs for c in r["cells"]]
    head = {k: v for k, v in runs[0].items() if k != "cells"}
    old = {**head, "cells": [c for c in cells if c["profile"] == args.old_profile]}
    new = {**head, "cells": []}
    for c in cells:
        if c["profile"] == args.new_profile:
            c = copy.deepcopy(c)
            c["key"] = c["key"].replace(args.new_profile, args.old_profile)
            new["cells"].append(c)
    if not old["cells"] or not new["cells"]:
        raise SystemExit(f"no cells of profile {args.old_profile!r} or {args.new_profile!r} in {args.results}")
    print("\n".join(describe(compare(old, new), old, new)))


if __name__ == "__main__":
    main()
