"""biostrata: representations of biological sequences across strata, Euclidean and hyperbolic."""

__version__ = "0.1.0"

import os as _os

# OpenMP threads sleep while they wait instead of spinning: on a shared 2-core machine the default
# spin-waiting made 2 torch threads 2.6-4.9x slower than 1 (docs/benchmarks.md). It must be set
# before torch loads OpenMP, so here; a value already in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
