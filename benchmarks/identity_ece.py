"""Identity-level calibration of the reported confidence on nyala-dev's open split.

    python benchmarks/identity_ece.py DB [DB ...]

For each gallery database (same cached features; one with a `reid-engine calibrate` fit, one
without) runs the `nyala` profile on the open split and prints the ECE of the top identity's
reported score against whether that identity is right (unknown queries are never right).
"""

import sys
from pathlib import Path

import numpy as np

from reid_engine.calibration.fit import expected_calibration_error
from reid_engine.commands.run import run
from reid_engine.records import NEW_INDIVIDUAL
from reid_engine.registry.profiles import resolve_profile
from reid_engine.runs import RunOptions

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyala-dev"

if __name__ == "__main__":
    profile, _ = resolve_profile("nyala", None)
    for db in sys.argv[1:]:
        r = run(RunOptions(profile=profile, db=Path(db), out=None, gallery=DATA / "metadata.csv",
                           split=DATA / "splits" / "open.csv"), progress=False)
        conf = np.array([p.candidates[0].score if p.candidates else 0.0 for p in r.predictions])
        right = np.array([bool(p.candidates) and p.truth != NEW_INDIVIDUAL and p.candidates[0].identity == p.truth
                          for p in r.predictions], float)
        ece, _ = expected_calibration_error(conf, right)
        print(db, r.calibration, f"identity-level ECE {ece:.4f}", f"mean confidence {conf.mean():.3f}",
              f"accuracy {right.mean():.3f}", {k: round(v, 3) for k, v in r.metrics.items() if isinstance(v, float)})
