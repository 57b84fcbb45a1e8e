"""Training: the Lightning module of the genome classifiers, one trainer factory, a run
(:mod:`.run`), masked-LM pre-training and sweeps.

Called, this package is the front door's :func:`biostrata.api.genome.train`: ``biostrata.train(data, ...)``
(its docstring is ``help(biostrata.train)``; this one is ``biostrata.train.__package_doc__``).
"""

import sys

from biostrata import _entry_package

_entry_package(sys.modules[__name__])
