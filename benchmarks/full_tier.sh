#!/usr/bin/env bash
# The full benchmark tier: nyala-dev (its fixed closed and open splits) and two synthetic seal
# difficulties, against every shipped profile. Hours on 2 CPU cores the first time; resumable.
#
#   benchmarks/full_tier.sh OUT [extra reid-engine benchmark options, e.g. --compare OLD/results.json]
set -eu
OUT=${1:?usage: benchmarks/full_tier.sh OUT [options]}; shift
REPO=$(cd "$(dirname "$0")/.." && pwd)
"$REPO/.venv/bin/reid-engine" benchmark \
  --dataset "$REPO/../shared/data/nyala-dev" --dataset synthetic-seal-easy --dataset synthetic-seal-hard \
  --profile nyala --profile seal --profile seal-norppa --profile generic \
  --split closed --split open --out "$OUT" --resume "$@"
