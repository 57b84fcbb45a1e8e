#!/bin/sh
# The checks that need a GPU, in one job of under 8 minutes on one GPU, written as one JSON:
#
#   sh benchmarks/device_check.sh [RESULT.json]          # on the GPU machine, from the repository root
#   sh benchmarks/device_check.sh --cpu [RESULT.json]    # the same steps on the CPU at tiny sizes (a dry run)
#
# Steps (benchmarks/device_check.py): the tests that need CUDA; benchmarks/step_time.py (hcnn-s over cnn,
# lengths 300 and 1000) in fp32 and in bf16-mixed; embedding throughput of a random transformers ESM-2
# (6 x 320) built on the spot; `biostrata study strata --accelerator gpu` on a tiny synthetic data set.
# RESULT defaults to $OUT/device_check.json ($OUT: the folder the GPU machine returns), else ./device_check.json.
#
# The GPU machine reaches no network: the interpreter the script runs, $PYTHON (default .venv/bin/python),
# must import biostrata and its dependencies. A venv with torch is too large to carry (64 MiB a call). On this
# workplace's GPU machines python3 already holds torch, lightning, transformers, h5py, pandas, scikit-learn
# and matplotlib, but not geoopt, sequence-models or fair-esm: carry their wheels (about 250 KB) and run from
# source (untested on a GPU: none was lent to this project yet):
#   here:  echo /.whl/ >> .git/info/exclude
#          python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#            --platform manylinux_2_17_x86_64 -d .whl geoopt sequence-models fair-esm
#   there (carry .whl):  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#          PYTHON=python3 PYTHONPATH=src:/tmp/site sh benchmarks/device_check.sh
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
CPU=
if [ "${1:-}" = "--cpu" ]; then CPU=--cpu; shift; fi
RESULT=${1:-${OUT:-.}/device_check.json}
if [ ! -x "$PYTHON" ]; then
  echo "device_check: no interpreter at $PYTHON; set PYTHON to one with biostrata installed" >&2
  exit 2
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
echo "device_check: $("$PYTHON" --version 2>&1), OMP_WAIT_POLICY=$OMP_WAIT_POLICY, result $RESULT"
exec "$PYTHON" benchmarks/device_check.py $CPU --out "$RESULT"
