"""The front door's functions (re-exported lazily by :mod:`biostrata`), one module per line of work:
:mod:`.models` (load, embed), :mod:`.domains` (annotate), :mod:`.genome` (simulate, train) and
:mod:`.analysis` (delta, cka, probe).

Each function owns its defaults; a command's options are made from its signature
(:mod:`biostrata.cli.options`), so that they are written once. The modules load nothing heavy at
import time (each function imports what it needs), so the commands can build their options from
them at once.
"""
