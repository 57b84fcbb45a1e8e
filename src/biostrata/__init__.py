"""biostrata: representations of biological sequences across strata, Euclidean and hyperbolic."""

__version__ = "0.1.0"
