"""Task tables: one reader and writer, so every role accepts or rejects a file the same way."""

import codecs

import numpy as np
import pytest

from fedcore.errors import DataError
from fedcore.tables import read_header, read_task_table, task_table_bytes, write_task_table
from fedcore.task import TaskSpec

SPEC = TaskSpec(name="t", model="logreg", feature_columns=("f2", "f0", "f1"), label_column="label", metric="accuracy")
GOOD = "id,f0,f1,label,f2\nx,1,10,0,100\ny,3,30.5,1,300\n\nz,5,50,1,-5e-3\n"


def _node(path):
    from node.site import load_site

    return load_site(path, SPEC).n_rows


def _aggregator(path):
    from fedcore.population import load_validation_set

    return len(load_validation_set(path, SPEC))


def _sponsor(path):
    from fedledger.sponsor import check_validation_columns

    return check_validation_columns(path, SPEC)


def _auditor(path):
    from fedcore.population import load_validation_set

    return len(load_validation_set(path, SPEC))


ROLES = {"node": _node, "aggregator": _aggregator, "sponsor": _sponsor, "auditor": _auditor}

# (file content, the one-line error after "<path> ", or None when accepted)
CASES = [
    (GOOD, None),
    ("\ufeff" + GOOD, None),  # a spreadsheet's byte-order mark
    (GOOD.replace("\n", "\r\n"), None),
    ("", ": empty file, expected a header row"),
    ("f0,f1,label\n1,2,0\n", "line 1: missing column(s) f2 (the task needs f2, f0, f1, label)"),
    ("f0,f1,f1,f2,label\n1,2,2,3,0\n", "line 1: duplicated column(s) f1 in the header"),
    ("f0,f1,f2,label\n", ": no data rows under the header"),
    ("f0,f1,f2,label\n1,2,3,0\n\n1,2,secret-value,1\n", "line 4: column 'f2' is not a number"),
    ("f0,f1,f2,label\n1,2,NaN,0\n", "line 2: column 'f2' is NaN or infinite"),
    ("f0,f1,f2,label\n1,2,-inf,0\n", "line 2: column 'f2' is NaN or infinite"),
    ("f0,f1,f2,label\n1, ,3,0\n", "line 2: column 'f1' is empty"),
    ("f0,f1,f2,label\n1,2,3,0\n1,2,3,0.5\n", "line 3: label 'label' must be 0 or 1"),
    ("f0,f1,f2,label\n1,2,3\n", "line 2: 3 fields, the header has 4"),
    ('f0,f1,f2,label,note\n1,2,3,0,"two\nlines"\n1,2,x,1,n\n', "line 4: column 'f2' is not a number"),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("content, error", CASES, ids=range(len(CASES)))
def test_every_role_accepts_or_rejects_a_file_identically(tmp_path, role, content, error):
    path = tmp_path / "table.csv"
    path.write_bytes(content.encode("utf-8"))
    if error is None:
        assert ROLES[role](path) == 3
        return
    with pytest.raises(DataError) as info:
        ROLES[role](path)
    assert str(info.value) == f"{path}{'' if error.startswith(':') else ' '}{error}"
    assert "secret-value" not in str(info.value)  # errors name the cell, never its value


@pytest.mark.parametrize("role", ROLES)
def test_unreadable_and_non_utf8_files_are_one_line(tmp_path, role):
    with pytest.raises(DataError, match="cannot read"):
        ROLES[role](tmp_path / "none.csv")
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"f0,f1,f2,label\n1,2,3,0\n" + "é".encode("latin-1"))
    with pytest.raises(DataError) as info:
        ROLES[role](path)
    assert str(info.value) == f"{path}: not UTF-8 text"


def test_the_demo_reads_site_files_by_the_same_rules(tmp_path):
    from dataclasses import replace

    from fedledger.demo import DemoOptions, read_sites

    rows = "".join(f"{i},{i % 3},{i * 0.5},{i % 2},s{i}\n" for i in range(16))
    good = tmp_path / "a.csv"
    good.write_bytes(codecs.BOM_UTF8 + ("f0,f1,f2,label,note\n" + rows).encode())
    validation = tmp_path / "v.csv"
    validation.write_text("f2,f0,f1,label\n" + "".join(f"{i},{i},{i % 3},{i % 2}\n" for i in range(6)))
    options = DemoOptions(sites=(good, good), label="label", validation=validation, test=validation)
    inputs = read_sites(options)
    assert inputs.spec.feature_columns == ("f2", "f0", "f1")  # the sponsor's columns; the site's text column unused
    bad = tmp_path / "b.csv"
    bad.write_text("f0,f1,f2,label\n0,0,0,0\n1,1,1,2\n" + "".join(f"{i},{i % 3},{i},{i % 2}\n" for i in range(16)))
    with pytest.raises(DataError) as info:
        read_sites(replace(options, sites=(good, bad)))
    assert str(info.value) == f"{bad} line 3: label 'label' must be 0 or 1"


def test_features_in_task_order_labels_extra_columns_and_sha256(tmp_path):
    import hashlib

    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    table = read_task_table(path, SPEC.feature_columns, SPEC.label_column, extra_columns=("id",))
    assert table.features.dtype == np.float32 and table.features.shape == (3, 3)
    assert table.features.tolist() == [[100, 1, 10], [300, 3, 30.5], [np.float32(-5e-3), 5, 50]]
    assert table.labels.dtype == np.float32 and table.labels.tolist() == [0, 1, 1]
    assert table.extra == {"id": ("x", "y", "z")}
    assert table.sha256 == hashlib.sha256(path.read_bytes()).digest()
    assert read_header(path) == ("id", "f0", "f1", "label", "f2")
    with pytest.raises(DataError, match=r"line 1: missing column\(s\) site"):
        read_task_table(path, SPEC.feature_columns, SPEC.label_column, extra_columns=("site",))


def test_write_then_read_round_trips_float64_exactly(tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(50, 3)) * 10.0 ** rng.integers(-12, 12, size=(50, 3)),
                        [[0.1, 1e300, 5e-324], [3.0, -0.0, 2**60], [-7.0, 0.0, np.float32(0.1)]]])
    n = len(X)
    y = (rng.random(n) > 0.5).astype(np.float32)
    path = tmp_path / "w.csv"
    data = write_task_table(path, ("a", "b", "c"), "y", X, y, extra={"site": ["h"] * n})
    assert path.read_bytes() == data and data.startswith(b"a,b,c,y,site\n") and b"\r" not in data
    back = read_task_table(path, ("a", "b", "c"), "y", extra_columns=("site",), dtype=np.float64)
    assert back.features.tobytes() == X.tobytes()  # bit for bit, the sign of -0.0 included
    np.testing.assert_array_equal(back.labels, y)
    assert back.extra["site"] == ("h",) * n
    written = task_table_bytes(("a",), "y", np.array([[3.0], [-7.0], [0.25]]), np.array([1, 0, 0]))
    assert written == b"a,y\n3,1\n-7,0\n0.25,0\n"  # integers without ".0"


def test_writing_non_finite_features_is_refused():
    with pytest.raises(DataError, match="NaN or infinite"):
        task_table_bytes(("a",), "y", np.array([[np.nan]]), np.array([0]))
