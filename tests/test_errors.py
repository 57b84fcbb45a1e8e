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


@pytest.mark.parametrize(
    ("value", "least", "most", "message"),
    [
        (0, 1, None, r"^points=0: give a whole number, 1 or more$"),
        (2.0, 1, None, r"^points=2\.0: give a whole number, 1 or more$"),
        (True, 1, None, r"^points=True: give a whole number, 1 or more$"),
        (3, 4, None, r"^points=3: give a whole number, 4 or more \(the four-point condition\)$"),
        (9, 1, 8, r"^points=9: give a whole number from 1 to 8 \(the four-point condition\)$"),
    ],
)
def test_a_count_is_refused_by_its_parameter(value, least, most, message):
    from biostrata.errors import check_count

    with pytest.raises(ParameterError, match=message) as caught:
        check_count("points", value, least, most, why="the four-point condition" if least == 4 or most else "")
    assert caught.value.param == "points"
    check_count("points", np.int64(4), 4)  # numpy integers are whole numbers
    check_count("points", 8, 1, 8)


@pytest.mark.parametrize(
    ("options", "param", "message"),
    [
        ({"calibrate": 2}, "calibrate", r"^calibrate=2: give a whole number, 4 or more"),
        ({"calibrate": 10, "samples": 0}, "samples", r"^samples=0: give a whole number, 1 or more"),
        ({"calibrate": 10, "histogram": 0}, "histogram", r"^histogram=0: "),
        ({"calibrate": 10, "histogram": 4, "histogram_bases": 0}, "histogram_bases", r"^histogram_bases=0: "),
        ({"calibrate": 10, "curvature": -1.0}, "curvature", r"^curvature=-1\.0: give K > 0"),
        ({"model": "m", "data": "d", "points": 2}, "points", r"^points=2: give a whole number, 4 or more"),
        ({"model": "m", "data": "d", "kmer": 9}, "kmer", r"^kmer=9: give a whole number from 1 to 8"),
    ],
)
def test_delta_names_its_own_parameters_before_any_work(options, param, message):
    """Each refused before a model is loaded or a point drawn (``m`` and ``d`` do not exist)."""
    import biostrata

    with pytest.raises(ParameterError, match=message) as caught:
        biostrata.delta(**options)
    assert caught.value.param == param
