"""``python -m biostrata.cli``: the same as the ``biostrata`` command."""

import sys

from biostrata.cli import main

sys.exit(main())
