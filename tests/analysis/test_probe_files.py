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
