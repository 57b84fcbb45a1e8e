from pathlib import Path

import pytest

from biostrata.analysis.probe_files import read_labels
from biostrata.errors import InputError


def test_read_labels(tmp_path: Path) -> None:
    path = tmp_path / "classes.csv"
    path.write_text("sequence_id,NRP,RiPP,bgc\nA,1,0,g1\nB,0,1,g1\nC,1,1,g2\n")
    ids, y, names, groups = read_labels(str(path), group_column="bgc")
    assert ids == ["A", "B", "C"] and names == ["NRP", "RiPP"] and y.tolist() == [[1, 0], [0, 1], [1, 1]]
    assert groups.tolist() == ["g1", "g1", "g2"]
    _, y1, names1, _ = read_labels(str(path), label_column="bgc")
    assert y1.tolist() == ["g1", "g1", "g2"] and names1 == ["g1", "g2"]
    with pytest.raises(InputError, match="column 'bgc' is not 0/1"):
        read_labels(str(path))
    with pytest.raises(InputError, match="no column 'nope'"):
        read_labels(str(path), group_column="nope")


def test_label_files_that_hold_nothing(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InputError, match=r"e\.csv: empty file"):
        read_labels(str(tmp_path / "e.csv"))
    (tmp_path / "h.csv").write_text("id,label\n")
    with pytest.raises(InputError, match=r"h\.csv: a header \(id,label\) but no rows"):
        read_labels(str(tmp_path / "h.csv"), label_column="label")


def test_features_without_ids_need_rows_in_label_order(tmp_path: Path) -> None:
    import numpy as np

    from biostrata.analysis.probe_files import probe_files
    from biostrata.analysis.probes import LinearProbe

    rng = np.random.default_rng(0)
    y = np.arange(20) % 2
    np.save(tmp_path / "x.npy", rng.normal(size=(20, 3)) + y[:, None])
    (tmp_path / "y.csv").write_text("id,label\n" + "".join(f"s{i},{k}\n" for i, k in enumerate(y)))
    args = ([str(tmp_path / "x.npy")], str(tmp_path / "y.csv"), LinearProbe(Cs=(1.0,)))
    kw = dict(label_column="label", n_splits=2, seeds=[0], n_boot=0, progress=False)
    with pytest.raises(InputError, match="rows have no ids"):
        probe_files(*args, **kw)
    summary, _ = probe_files(*args, rows_in_label_order=True, **kw)
    assert summary["n"].tolist() == [20]
    with pytest.raises(InputError, match=r"seeds=\[1, 1\]: 1 is given twice"):
        probe_files(*args, **{**kw, "seeds": [1, 1]})
