"""Every bad input raises one `DataError` naming the file, the line and the problem.

The corpus lives in tests/data/bad/ (regenerate with ``python tests/data/make_bad.py``); each
case is one row: input, the file the message must name, the line (None: the whole file), and
a piece of the problem's wording.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from m6rec.data import DataError, from_dataframe, load_dataset, load_datasets, load_files
from m6rec.data.validate import build_dataset

BAD = Path(__file__).parent / "bad"

# (input under bad/, load_files column mapping or None, file named, line, problem substring)
CASES = [
    ("missing_user_id.csv", None, "missing_user_id.csv", 1, "missing column 'user_id'"),
    ("missing_item_id_mapped.csv", {"user_id": "user", "item_id": "asin"},
     "missing_item_id_mapped.csv", 1, "missing column 'asin' (mapped to 'item_id'"),
    ("bad_timestamp.csv", None, "bad_timestamp.csv", 3, "unparsable timestamp 'yesterday'"),
    ("iso_typo.csv", None, "iso_typo.csv", 3, "unparsable timestamp '2020-13-01'"),
    ("bad_rating.csv", None, "bad_rating.csv", 4, "unparsable rating 'five'"),
    ("infinite_rating.csv", None, "infinite_rating.csv", 2, "rating must be finite, got 'inf'"),
    ("empty.csv", None, "empty.csv", None, "file is empty (0 bytes)"),
    ("header_only.csv", None, "header_only.csv", None, "no data rows (the file has a header only)"),
    ("non_utf8.csv", None, "non_utf8.csv", 3, "not valid UTF-8 (byte 0xe9 at column 2"),
    ("wrong_field_count.csv", None, "wrong_field_count.csv", 3, "expected 3 fields"),
    ("empty_user_id.csv", None, "empty_user_id.csv", 4, "empty user_id"),
    ("mixed_timestamps.csv", None, "mixed_timestamps.csv", 3,
     "empty timestamp in column 'timestamp' while other rows have one"),
    ("no_position.csv", None, "no_position.csv", 3, "empty position in column 'position'"),
    ("duplicate_column.csv", None, "duplicate_column.csv", 1, "duplicate column 'item_id'"),
    ("unclosed_quote.csv", None, "unclosed_quote.csv", 3, "a quoted field is never closed"),
    ("truncated.csv.gz", None, "truncated.csv.gz", None, "not a valid gzip file (truncated"),
    ("not_gzip.csv.gz", None, "not_gzip.csv.gz", None, "not a valid gzip file (no gzip header"),
    ("corrupt_crc.csv.gz", None, "corrupt_crc.csv.gz", None, "not a valid gzip file (corrupt"),
    ("bad_json.jsonl", None, "bad_json.jsonl", 3, "invalid JSON"),
    ("not_object.jsonl", None, "not_object.jsonl", 2, "each line must be a JSON object"),
    ("bad_array.json", None, "bad_array.json", 4, "expected ',' or ']'"),
    ("corrupt.parquet", None, "corrupt.parquet", None, "cannot read Parquet"),
    ("recbole_bad_type", None, "bad.inter", 1, "'user_id:tokn' has unknown type 'tokn'"),
    ("recbole_no_type", None, "notype.inter", 1, "header field 'item_id' has no ':type'"),
    ("recbole_float_text", None, "ft.inter", 3, "'rating' is declared float but holds 'good'"),
    ("recbole_field_count", None, "fc.inter", 4, "expected 4 tab-separated fields"),
    ("recbole_link_two", None, "kg2.link", 4, "item 'i1' is linked to two entities"),
    ("recbole_kg_no_link", None, "nolink.kg", None, "without item links (.link)"),
    ("folder_dup_item", None, "items.csv", 5,
     "duplicate item_id 'i2' with different text in 'title' (first defined at line 3)"),
    ("folder_unknown_item", None, "interactions.csv", 3, "unknown item id 'i9'"),
    ("folder_dup_user", None, "users.csv", 4, "duplicate user_id 'u1' (first defined at line 2)"),
    ("folder_items_no_id", None, "items.csv", 1, "missing column 'item_id'"),
    ("folder_items_latin1", None, "items.csv.gz", 3, "not valid UTF-8"),
]


def _load(name: str, columns: dict[str, str] | None):
    path = BAD / name
    return load_dataset(path) if columns is None else load_files(path, columns=columns)


def test_corpus_is_complete():
    on_disk = {p.name for p in BAD.iterdir()}
    assert on_disk == {c[0] for c in CASES}
    assert len(CASES) >= 16


@pytest.mark.parametrize(("name", "columns", "file", "line", "problem"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_file(name, columns, file, line, problem):
    with pytest.raises(DataError) as info:
        _load(name, columns)
    err = info.value
    msg = str(err)
    assert Path(err.path).name == file
    assert err.line == line
    where = f"{file}, line {line}: " if line is not None else f"{file}: "
    assert where in msg, msg
    assert problem in err.problem and problem in msg, msg
    assert msg.count(", line ") == (line is not None)


def test_error_pickles():
    err = DataError("a/b.csv", "empty user_id", line=7)
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.line, back.problem, str(back)) == (err.path, 7, err.problem, str(err))


def test_failed_multi_domain_load_returns_nothing():
    result = None
    with pytest.raises(DataError, match=r"mixed_timestamps\.csv, line 3"):
        result = load_datasets(f"ml-100k,{BAD / 'mixed_timestamps.csv'}")
    assert result is None
    with pytest.raises(DataError, match="no such dataset"):
        load_datasets("ml-100k-typo")


def _frames():
    inter = pd.DataFrame({"user": ["u1", "u1", "u2", " u2 "], "item_id": [1, 2, 1, 3],
                          "timestamp": [10, 10, 5, 6], "rating": [4.0, 5.0, 3.0, 2.0]})
    items = pd.DataFrame({"item_id": [1, 2, 3, 3], "title": ["a", "b", "c", "c"]})
    users = pd.DataFrame({"user_id": ["u1", "u2"], "age": [30, np.nan]})
    return inter, items, users


def test_builders_never_mutate_their_input():
    inter, items, users = _frames()
    before = [f.copy(deep=True) for f in (inter, items, users)]
    ds = from_dataframe(inter, columns={"user_id": "user"}, items=items, users=users)
    assert ds.n_items == 3 and ds.n_users == 2 and ds.users["age"].tolist() == ["30", ""]
    for f, b in zip((inter, items, users), before, strict=True):
        pd.testing.assert_frame_equal(f, b)
        assert "_line" not in f.columns and not f.attrs

    raw = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["i1", "i2"]})
    kg = pd.DataFrame({"head_id": ["e1"], "relation_id": ["r"], "tail_id": ["e2"]})
    link = pd.DataFrame({"item_id": [" i1 "], "entity_id": ["e1"]})
    frames = (raw, kg, link)
    before = [f.copy(deep=True) for f in frames]
    ds = build_dataset("x", raw, "<x>", kg=kg, link=link)
    assert ds.kg.item_entity.tolist() == [0, -1]
    for f, b in zip(frames, before, strict=True):
        pd.testing.assert_frame_equal(f, b)


def test_failed_dataframe_load_names_the_row_and_leaves_input_alone():
    inter, items, users = _frames()
    bad = inter.assign(rating=[4.0, np.inf, 3.0, 2.0])
    copy = bad.copy(deep=True)
    with pytest.raises(DataError, match=r"<DataFrame>, line 2: rating must be finite"):
        from_dataframe(bad, columns={"user_id": "user"})
    pd.testing.assert_frame_equal(bad, copy)
    with pytest.raises(DataError, match=r"^<DataFrame>: missing column 'user_id'"):
        from_dataframe(inter)
    with pytest.raises(DataError, match=r"<DataFrame>, line 3: empty item_id"):
        from_dataframe(inter.assign(item_id=[1, 2, None, 3]), columns={"user_id": "user"})
    with pytest.raises(DataError, match=r"<users DataFrame>, line 2: duplicate user_id 'u1'"):
        from_dataframe(inter, columns={"user_id": "user"}, users=users.assign(user_id="u1"))
    with pytest.raises(DataError, match=r"mapped to 'user_id', but the file has a column"):
        from_dataframe(inter.assign(user_id="x"), columns={"user_id": "user"})
