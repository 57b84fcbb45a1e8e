import pytest

from biostrata.data.dna.genome import EncodedSequences, read_gue_dir, read_labelled
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
        ("h.csv", "seq,lab\nACGT,0\n", r"h.csv:1: expected a header with a sequence column"),
        ("l.csv", "sequence,label\nACGT,0\nACGT,x\n", r"l.csv:3: label 'x' is not an integer"),
        ("n.csv", "sequence,label\nACGT,-1\n", r"n.csv:2: label -1 is negative"),
        ("f.csv", "sequence,label\nACGT\n", r"f.csv:2: expected at least 2 fields"),
        ("e.csv", "sequence,label\n,1\n", r"e.csv:2: empty sequence"),
        ("z.csv", "sequence,label\n", r"z.csv: no sequences found"),
        ("u.fa", ">s1\nACGT\n", r"u.fa:1: no label in FASTA header"),
        ("v.fa", "ACGT\n>s1|0\nAC\n", r"v.fa:1: sequence before the first '>'"),
        ("w.fa", ">s1|0\n>s2|1\nAC\n", r"w.fa:1: record has no sequence"),
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
    with pytest.raises(InputError, match=r"test.csv:3: label 2 does not occur in the training split"):
        _ = read_gue_dir(tmp_path).num_classes
    (tmp_path / "dev.csv").unlink()
    with pytest.raises(DataNotFoundError, match="missing dev.csv"):
        read_gue_dir(tmp_path)
    with pytest.raises(DataNotFoundError, match="no such folder"):
        read_gue_dir(tmp_path / "nope")


def test_encoding_error_names_file_and_line(tmp_path):
    s = read_labelled(write(tmp_path / "t.csv", "sequence,label\nACGT,0\nACJT,1\n"))
    with pytest.raises(InputError, match=r"invalid character 'J' at position 3 \(.*t.csv:3\)"):
        EncodedSequences(s, 4)
    ok = EncodedSequences(read_labelled(write(tmp_path / "o.csv", "sequence,label\nACGTAC,0\n")), 4, truncate=True)
    assert ok[0][0].tolist() == [0, 1, 2, 3]


def test_gzip_is_told_by_its_bytes_and_a_byte_order_mark_is_dropped(tmp_path):
    import gzip

    (tmp_path / "plain_name.csv").write_bytes(gzip.compress(b"sequence,label\nACGT,0\n"))
    assert read_labelled(tmp_path / "plain_name.csv").sequences == ["ACGT"]
    (tmp_path / "reads.fasta.gz").write_bytes(gzip.compress(b">a label=1\r\nAC\r\nGT\r\n"))
    assert read_labelled(tmp_path / "reads.fasta.gz").sequences == ["ACGT"]
    assert read_labelled(write(tmp_path / "bom.csv", "\ufeffsequence,label\nAC,1\n")).labels.tolist() == [1]
    (tmp_path / "bin.csv").write_bytes(bytes(range(256)))
    with pytest.raises(InputError, match=r"bin.csv: not a text file"):
        read_labelled(tmp_path / "bin.csv")


def test_a_record_longer_than_the_csv_field_limit_is_read(tmp_path):
    """Python's csv refuses fields over 131,072 characters by default; genomic records are longer. The
    limit is raised only while a file is read: importing the module leaves the process's limit alone."""
    import csv
    import subprocess
    import sys

    code = "import csv, biostrata.data.dna.genome; print(csv.field_size_limit())"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "131072\n"
    before = csv.field_size_limit()
    s = read_labelled(write(tmp_path / "g.csv", "sequence,label\n" + "ACGT" * 50_000 + ",1\nAC,0\n"))
    assert [len(q) for q in s.sequences] == [200_000, 2] and s.lines == [2, 3]
    assert csv.field_size_limit() == before


def test_labels_are_the_distinct_training_labels(tmp_path):
    for split, rows in [("train", "AC,5\nGT,0\nAA,5\n"), ("dev", "ACG,5\n"), ("test", "ACGTA,0\n")]:
        write(tmp_path / f"{split}.csv", "sequence,label\n" + rows)
    splits = read_gue_dir(tmp_path)
    assert splits.labels == [0, 5] and splits.num_classes == 2
    assert EncodedSequences(splits.train, 5, labels=splits.labels).labels.tolist() == [1, 0, 1]
    write(tmp_path / "dev.csv", "sequence,label\nAC,1\n")
    with pytest.raises(InputError, match=r"dev.csv:2: label 1 does not occur .* \(labels 0, 5\)"):
        _ = read_gue_dir(tmp_path).labels


def test_a_task_folder_may_hold_fasta_and_gzip_files(tmp_path):
    import gzip

    write(tmp_path / "train.fa", ">a label=0\nACGT\n>b label=1\nGGGG\n")
    (tmp_path / "dev.csv.gz").write_bytes(gzip.compress(b"sequence,label\nAC,1\n"))
    write(tmp_path / "test.csv", "sequence,label\nA,0\n")
    splits = read_gue_dir(tmp_path)
    assert [len(s) for s in splits] == [2, 1, 1] and splits.dev.source.endswith("dev.csv.gz")
