#!/usr/bin/env bash
# Reference outputs of the demo, calibrate (+ a calibrated run), explain, segment and a nyala-dev
# closed run, for showing that a refactor changes no output (issue 14):
#
#   benchmarks/same_outputs.sh /tmp/byte/before /tmp/oldshim   # an old commit (see below)
#   benchmarks/same_outputs.sh /tmp/byte/after                  # this checkout
#   python3 benchmarks/compare_outputs.py /tmp/byte/before /tmp/byte/after demo/predictions.csv ...
#
# The second argument is a PYTHONPATH under which `reid_engine` is an old commit: `git worktree
# add /tmp/old REV`, then a folder /tmp/oldshim/reid_engine holding links to /tmp/old/engine/*
# plus registry -> /tmp/old/registry and plugins -> /tmp/old/plugins.
# NYALA_DB (a nyala-dev database with the shipped profile's features cached, e.g. from
# the benchmark cell DIR/cells/nyala-dev/nyala/closed/gallery.db) is copied, so the nyala-dev run extracts nothing; NYALA=0 skips it.
set -eu
O=$1; export PYTHONPATH=${2:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
R="$REPO/.venv/bin/python -m reid_engine"
rm -rf "$O"; mkdir -p "$O"; cd "$O"
$R run --species seal --out demo --quiet > demo.log 2>&1
mkdir cal && cp -r demo/gallery.db* cal/
$R calibrate --species seal --gallery demo/demo-data/gallery.csv --db cal/gallery.db --plots cal/plots --quiet > cal.log 2>&1
$R run --species seal --query demo/demo-data/query.csv --db cal/gallery.db --out cal/run --quiet > cal-run.log 2>&1
Q=$(sed -n 2p demo/demo-data/query.csv | cut -d, -f2); G=$(sed -n 2p demo/demo-data/gallery.csv | cut -d, -f3)
$R explain "demo/demo-data/$Q" "demo/demo-data/$G" --species seal --db demo/gallery.db --out explain.png > explain.log 2>&1
$R segment demo/demo-data/query.csv --species seal --db demo/gallery.db > segment.log 2>&1 || echo "segment rc $?" >> segment.log
if [ "${NYALA:-1}" = 1 ]; then
  D=$(cd "$REPO/../shared/data/nyala-dev" && pwd)  # resolved: predictions.csv carries the paths
  mkdir ny && cp "${NYALA_DB:?set NYALA_DB, or NYALA=0}" ny/nyala.db && cp -r "$NYALA_DB.d" ny/nyala.db.d
  $R run --species nyala --gallery "$D/metadata.csv" --split "$D/splits/closed.csv" --db ny/nyala.db --out ny/out --quiet > ny.log 2>&1
  rm -rf ny/nyala.db.d
fi
echo DONE
