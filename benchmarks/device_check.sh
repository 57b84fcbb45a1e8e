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
# The GPU machine reaches no network: biostrata must already be installed in the interpreter the script
# runs, $PYTHON (default .venv/bin/python: a virtual environment carried with the working tree, made
# with `python -m venv .venv && .venv/bin/pip install -e '.[dev,protein]'` on a machine of the same
# platform; `pip install -e .` on the GPU machine itself works only where its pip can reach a package index
# or a wheel folder).
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
