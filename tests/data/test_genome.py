import pytest

from biostrata.data.genome import EncodedSequences, read_gue_dir, read_labelled
from biostrata.errors import DataNotFoundError, InputError


def write(path, text):
    path.write_text(text)
    return path


def test_read_csv_and_fasta(tmp_path):
    s = read_labelled(write(tmp_path / "a.csv", "sequence,label\nACGT,0\nGGa,1\n"))
    assert s.sequences == ["ACGT", "GGa"] and s.labels.tolist() == [0, 1] and s.lines == [2, 3]
    f = read_labelled(write(tmp_path / "a.fa", ">s1 label=1\nACG\nTT\n>s2|0\nGG\n"))
    assert f.sequences == ["ACGTT", "GG"] and f.labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("h.csv", "seq,lab\nACGT,0\n", r"h.csv, line 1: expected the header 'sequence,label'"),
        ("l.csv", "sequence,label\nACGT,0\nACGT,x\n", r"l.csv, line 3: label 'x' is not an integer"),
        ("n.csv", "sequence,label\nACGT,-1\n", r"n.csv, line 2: label -1 is negative"),
        ("f.csv", "sequence,label\nACGT\n", r"f.csv, line 2: expected 2 fields"),
        ("e.csv", "sequence,label\n,1\n", r"e.csv, line 2: empty sequence"),
        ("z.csv", "sequence,label\n", r"z.csv: no sequences found"),
        ("u.fa", ">s1\nACGT\n", r"u.fa, line 1: no label in FASTA header"),
        ("v.fa", "ACGT\n>s1|0\nAC\n", r"v.fa, line 1: sequence before the first '>'"),
        ("w.fa", ">s1|0\n>s2|1\nAC\n", r"w.fa, line 1: record has no sequence"),
    ],
)
def test_layout_errors_name_file_and_line(tmp_path, name, text, message):
    with pytest.raises(InputError, match=message):
        read_labelled(write(tmp_path / name, text))


def test_gue_dir_and_missing_files(tmp_path):
    for split, rows in [("train", "AC,0\nGT,1\n"), ("dev", "ACG,1\n"), ("test", "ACGTA,1\n")]:
        write(tmp_path / f"{split}.csv", "sequence,label\n" + rows)
    splits = read_gue_dir(tmp_path)
    # the test split never shapes the model: length from train and dev, classes from train
    assert splits.num_classes == 2 and splits.max_length == 3
    write(tmp_path / "test.csv", "sequence,label\nA,1\nACGTA,2\n")
    with pytest.raises(InputError, match=r"test.csv, line 3: label 2 does not occur in the training split"):
        _ = read_gue_dir(tmp_path).num_classes
    (tmp_path / "dev.csv").unlink()
    with pytest.raises(DataNotFoundError, match="missing dev.csv"):
        read_gue_dir(tmp_path)
    with pytest.raises(DataNotFoundError, match="no such folder"):
        read_gue_dir(tmp_path / "nope")


def test_encoding_error_names_file_and_line(tmp_path):
    s = read_labelled(write(tmp_path / "t.csv", "sequence,label\nACGT,0\nACJT,1\n"))
    with pytest.raises(InputError, match=r"invalid character 'J' at position 3 \(.*t.csv, line 3\)"):
        EncodedSequences(s, 4)
    ok = EncodedSequences(read_labelled(write(tmp_path / "o.csv", "sequence,label\nACGTAC,0\n")), 4, truncate=True)
    assert ok[0][0].tolist() == [0, 1, 2, 3]
