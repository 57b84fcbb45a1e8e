"""biostrata: representations of biological sequences across strata, Euclidean and hyperbolic.

The front door: one function per stage, each returning arrays or DataFrames in memory, with ``out=``
to write the files its command writes (the commands are thin shells over these functions).

- :func:`load`: a model of any family (genome CNN, domain LM, protein LM, family table);
- :func:`embed`: layer-wise embeddings of DNA, domain sentences or proteins by such a model;
- :func:`annotate`: the Pfam domains of genomes or gene clusters, as domain sentences;
- :func:`simulate`: a labelled DNA dataset grown along a tree;
- :func:`train`: a Euclidean or hyperbolic genome CNN;
- :func:`delta`: the Gromov delta-hyperbolicity of a distance matrix or of points;
- :func:`cka`: centered kernel alignment between layers of representations;
- :func:`probe`: cross-validated linear or MLP probes of features for labels.

They load lazily (PEP 562): ``import biostrata`` loads no torch, scikit-learn or pandas; the first use
of a function imports what it needs. The lower-level functions they call stay importable from their
modules (``biostrata.analysis``, ``biostrata.data``, ...).
"""

__version__ = "0.1.0"

import os as _os
import types as _types

# OpenMP threads sleep while they wait instead of spinning: on a shared 2-core machine the default
# spin-waiting made 2 torch threads 2.6-4.9x slower than 1 (docs/benchmarks.md). It must be set
# before torch loads OpenMP, so here; a value already in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Each public function and the module of biostrata.api that defines it.
_FRONT_DOOR = {
    "load": "models",
    "embed": "models",
    "annotate": "domains",
    "simulate": "genome",
    "train": "genome",
    "delta": "analysis",
    "cka": "analysis",
    "probe": "analysis",
}

__all__ = list(_FRONT_DOOR)


def _function(name: str):
    """The front-door function ``name``, imported from its module of biostrata.api."""
    import importlib

    return getattr(importlib.import_module(f"biostrata.api.{_FRONT_DOOR[name]}"), name)


def __getattr__(name: str):
    """Import a front-door function on first use (PEP 562)."""
    if name not in _FRONT_DOOR:
        raise AttributeError(f"module 'biostrata' has no attribute {name!r}")
    if name in _PACKAGES:  # importing the subpackage makes it the callable entry point (see _EntryPackage)
        import importlib

        return importlib.import_module(f"biostrata.{name}")
    value = globals()[name] = _function(name)  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FRONT_DOOR))


# Front-door names that are also subpackages: importing biostrata.train binds the attribute
# biostrata.train to the subpackage, so the subpackage is made callable instead (see below).
_PACKAGES = ("train",)


class _EntryPackage(_types.ModuleType):
    """A subpackage that is also the front-door function of its name: ``biostrata.train(...)`` calls
    :func:`biostrata.api.genome.train`, ``biostrata.train.run`` is still a module. Its signature and
    docstring (``help``) are the function's; the subpackage's own docstring is ``__package_doc__``."""

    def __call__(self, *args, **kwargs):
        return _function(self.__name__.rpartition(".")[2])(*args, **kwargs)

    @property
    def __signature__(self):
        import inspect

        return inspect.signature(_function(self.__name__.rpartition(".")[2]))

    @property
    def __doc__(self):  # type: ignore[override]
        return _function(self.__name__.rpartition(".")[2]).__doc__


def _entry_package(package: _types.ModuleType) -> None:
    """Make ``package`` (one of :data:`_PACKAGES`, calling this as it loads) its front-door function too."""
    package.__package_doc__ = package.__dict__.get("__doc__")
    package.__class__ = _EntryPackage
