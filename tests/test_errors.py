"""errors: a refused parameter is named as the function the user called names it."""

from __future__ import annotations

import numpy as np
import pytest

from biostrata.errors import InputError, ParameterError, parameters_named


def test_a_callee_error_is_raised_again_under_the_callers_names():
    err = ParameterError("n_splits", "n_splits=1: fewer than 2 folds; a path /x/n_splits.csv and n_splits_max stay")
    again = err.renamed({"n_splits": "folds"})
    assert isinstance(again, InputError) and again.param == "folds"
    assert str(again) == "folds=1: fewer than 2 folds; a path /x/n_splits.csv and n_splits_max stay"

    with pytest.raises(ParameterError, match=r"^folds=1: ") as caught, parameters_named({"n_splits": "folds"}):
        raise err
    assert caught.value.param == "folds"
    with pytest.raises(ParameterError, match=r"^seeds=\[\]") as caught, parameters_named({"n_splits": "folds"}):
        raise ParameterError("seeds", "seeds=[]: give one")  # not renamed: passes through as it is
    assert caught.value.param == "seeds"


@pytest.mark.parametrize(
    ("options", "param", "message"),
    [
        ({"folds": 1}, "folds", r"^folds=1: cross-validation needs at least 2 folds"),
        ({"bootstrap": -1}, "bootstrap", r"^bootstrap=-1: must be >= 0"),
        ({"cs": [0.0]}, "cs", r"^cs=\[0\.0\]: give one or more values of C"),
        ({"probe": "mlp", "hidden": [0]}, "hidden", r"^hidden=\[0\]: give one or more layer widths"),
    ],
)
def test_probe_names_its_own_parameters(options, param, message):
    import biostrata

    x, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    with pytest.raises(ParameterError, match=message) as caught:
        biostrata.probe(x, y, progress=False, **options)
    assert caught.value.param == param
