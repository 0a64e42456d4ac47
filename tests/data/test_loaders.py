"""The good paths: every supported input gives the same, correctly ordered `Dataset`."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from m6rec.data import (
    DataError,
    Dataset,
    from_dataframe,
    load_dataset,
    load_datasets,
    load_files,
    load_folder,
    load_recbole,
)
from m6rec.data.loaders import builtin_path
from m6rec.data.validate import tie_hash

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


# -- helpers ------------------------------------------------------------------------------------
def raw_histories(ds: Dataset) -> dict[str, list[str]]:
    """Each user's history as raw item ids, oldest first (independent of index assignment)."""
    inter = ds.inter
    users = ds.user_ids[inter["user_idx"].to_numpy()]
    items = ds.item_ids[inter["item_idx"].to_numpy()]
    out: dict[str, list[str]] = {}
    for u, i in zip(users, items, strict=True):
        out.setdefault(u, []).append(i)
    return out


def assert_well_formed(ds: Dataset):
    inter = ds.inter
    extra = [c for c in ("rating", "event") if c in inter.columns]
    assert list(inter.columns) == ["user_idx", "item_idx", "timestamp", "seq", *extra]
    assert inter["user_idx"].dtype == np.int64 and inter["item_idx"].dtype == np.int64
    assert inter["seq"].dtype == np.int64 and inter["timestamp"].dtype == np.float64
    u = inter["user_idx"].to_numpy()
    assert (np.diff(u) >= 0).all()
    assert ((0 <= u) & (u < ds.n_users)).all()
    i = inter["item_idx"].to_numpy()
    assert ((0 <= i) & (i < ds.n_items)).all()
    np.testing.assert_array_equal(inter["seq"].to_numpy(), inter.groupby("user_idx").cumcount())
    ts = inter["timestamp"].to_numpy()
    if ds.has_timestamps:
        same = np.diff(u) == 0
        assert (np.diff(ts)[same] >= 0).all()
    assert len(ds.items) == ds.n_items
    assert ds.users is None or len(ds.users) == ds.n_users


def same_dataset(a: Dataset, b: Dataset, *, names: bool = True):
    """Equal content: id maps, interactions, catalogue, profiles (and the name if asked)."""
    if names:
        assert a.name == b.name
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    pd.testing.assert_frame_equal(a.inter, b.inter)
    pd.testing.assert_frame_equal(a.items, b.items)
    if a.users is None or b.users is None:
        assert a.users is b.users
    else:
        pd.testing.assert_frame_equal(a.users, b.users)
    assert a.event_types == b.event_types


# -- the built-in ml-100k ---------------------------------------------------------------------
def test_builtin_ml100k(ml100k):
    ds = ml100k
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    assert ds.has_ratings and ds.has_timestamps
    r = ds.inter["rating"].to_numpy()
    assert r.dtype == np.float32 and r.min() == 1 and r.max() == 5
    assert {"age", "gender", "occupation"} <= set(ds.users.columns)
    assert set(ds.users["gender"]) == {"M", "F"} and (ds.users["age"] != "").all()
    assert ds.title_column == "movie_title" and ds.category_column == "class"
    kg = ds.kg
    assert kg is not None and len(kg.triples) == 91_631
    assert int((kg.item_entity >= 0).sum()) == 1534
    assert kg.triples.min() >= 0
    assert kg.triples[:, 0].max() < kg.n_entities and kg.triples[:, 1].max() < kg.n_relations
    assert ds.inter.groupby("user_idx").size().min() >= 20
    assert_well_formed(ds)


def test_builtin_files_ungzipped_via_load_recbole(ml100k, tmp_path):
    src = builtin_path("ml-100k")
    for gz in src.glob("*.gz"):
        with gzip.open(gz, "rb") as f, open(tmp_path / gz.name[:-3], "wb") as out:
            shutil.copyfileobj(f, out)
    ds = load_recbole(tmp_path)
    same_dataset(ds, ml100k)
    np.testing.assert_array_equal(ds.kg.item_entity, ml100k.kg.item_entity)
    np.testing.assert_array_equal(ds.kg.triples, ml100k.kg.triples)
    # the same through a prefix spec: folder/NAME
    assert load_dataset(tmp_path / "ml-100k").n_interactions == 100_000


# -- the shared folder layout -----------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_folder_without_timestamps_is_ordered_by_position(tmp_path):
    folder = tmp_path / "shop"
    write(folder / "interactions.csv",
          "user_id,item_id,timestamp,position\n"
          "u1,i3,,2\nu1,i1,,0\nu2,i2,,1\nu1,i2,,1\nu2,i3,,0\n")
    write(folder / "items.csv", 'item_id,title,categories\ni1,Pen,"Office, Pens"\n'
                                "i2,Stapler,Office\ni3,Desk,\ni4,Lamp,Office\n")
    write(folder / "users.csv", "user_id,country\nu2,FR\nu9,DE\n")
    ds = load_folder(folder)
    assert ds.name == "shop" and not ds.has_timestamps
    assert raw_histories(ds) == {"u1": ["i1", "i2", "i3"], "u2": ["i3", "i2"]}
    assert list(ds.item_ids) == ["i1", "i2", "i3", "i4"]  # catalogue order, unused items kept
    assert ds.items["categories"].tolist() == ["Office, Pens", "Office", "", "Office"]
    assert list(ds.user_ids) == ["u1", "u2", "u9"]
    assert ds.users["country"].tolist() == ["", "FR", "DE"]
    assert_well_formed(ds)
    same_dataset(load_dataset(str(folder)), ds)


def test_gzip_bom_and_quoted_newlines(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "interactions.csv.gz").write_bytes(gzip.compress(
        "\ufeffuser_id,item_id,timestamp,position\nu1,i1,5,0\nu1,i2,6,1\n".encode()))
    write(folder / "items.csv", 'item_id,description\ni1,"two\nlines"\ni2,x\ni1,"two\nlines"\n'
                                'i2,"changed\nhere"\n')
    with pytest.raises(Exception, match=r"items\.csv, line 7: duplicate item_id 'i2'"):
        load_folder(folder)
    write(folder / "items.csv", 'item_id,description\ni1,"two\nlines"\ni2,x\n')
    ds = load_folder(folder)
    assert ds.items["description"].tolist() == ["two\nlines", "x"]
    assert raw_histories(ds) == {"u1": ["i1", "i2"]}


# -- CSV / Parquet / JSONL / DataFrame with a column mapping -------------------------------------
MAPPING = {"user_id": "uid", "item_id": "iid", "timestamp": "ts", "rating": "stars",
           "event": "kind"}


@pytest.fixture()
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 60
    return pd.DataFrame({
        "uid": rng.integers(0, 6, n),
        "iid": rng.integers(100, 120, n),
        "ts": rng.integers(1_600_000_000, 1_600_000_010, n),  # many ties
        "stars": rng.integers(1, 6, n).astype(float) / 2,
        "kind": rng.choice(["click", "buy"], n),
    })


def test_formats_with_a_mapping_agree(frame, tmp_path):
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_csv(tmp_path / "log.tsv.gz", index=False, sep="\t", compression="gzip")
    frame.to_parquet(tmp_path / "log.parquet", index=False)
    frame.to_json(tmp_path / "log.jsonl", orient="records", lines=True)
    (tmp_path / "log.json").write_text(json.dumps(frame.to_dict("records"), indent=1))
    ref = from_dataframe(frame, columns=MAPPING, name="log")
    assert ref.event_types == ["buy", "click"] and ref.has_ratings
    assert ref.user_ids[0] == str(frame["uid"][0])  # ints become their plain text
    assert_well_formed(ref)
    for name in ("log.csv", "log.tsv.gz", "log.parquet", "log.jsonl", "log.json"):
        ds = load_files(tmp_path / name, columns=MAPPING)
        same_dataset(ds, ref)


def test_from_dataframe_with_items_and_users(checkerboard):
    ds = checkerboard
    assert ds.n_users == 50 and ds.n_items == 50
    assert ds.titles()[0] == "even item"
    m, vocab = ds.category_matrix()
    assert vocab == ["even", "odd"] and m.shape == (50, 2)
    assert_well_formed(ds)


# -- ordering ---------------------------------------------------------------------------------
def test_timestamp_ties_broken_by_hash_not_file_order_or_item_id(frame, tmp_path):
    frame = frame.drop_duplicates(["uid", "iid"])
    orders = []
    for seed in range(3):
        shuffled = frame.sample(frac=1.0, random_state=seed)
        shuffled.to_csv(tmp_path / f"s{seed}.csv", index=False)
        orders.append(raw_histories(load_files(tmp_path / f"s{seed}.csv", columns=MAPPING)))
    assert orders[0] == orders[1] == orders[2]
    # within a run of equal timestamps the order is the hash order, whatever the ids sort to
    ds = load_files(tmp_path / "s0.csv", columns=MAPPING)
    u = pd.Series(ds.user_ids[ds.inter["user_idx"]])
    i = pd.Series(ds.item_ids[ds.inter["item_idx"]])
    expect = ds.inter.assign(h=tie_hash(u, i)).sort_values(["user_idx", "timestamp", "h"],
                                                             kind="stable")
    np.testing.assert_array_equal(expect.index, np.arange(len(expect)))
    tied = ds.inter.duplicated(["user_idx", "timestamp"], keep=False)
    by_id = ds.inter[tied].assign(i=i[tied.to_numpy()].to_numpy()).groupby(
        ["user_idx", "timestamp"])["i"].apply(lambda s: list(s) == sorted(s))
    assert not by_id.all()  # some tie group is not in item-id order


def test_tie_break_options(tmp_path):
    write(tmp_path / "t.csv", "user_id,item_id,timestamp\n" +
          "".join(f"u,i{k},7\n" for k in (5, 3, 9, 1, 8, 2, 7)))
    file_order = raw_histories(load_files(tmp_path / "t.csv", tie_break="file"))["u"]
    assert file_order == ["i5", "i3", "i9", "i1", "i8", "i2", "i7"]
    hashed = raw_histories(load_dataset(tmp_path / "t.csv"))["u"]
    salted = raw_histories(load_datasets(str(tmp_path / "t.csv"), tie_break="hash:x")[0])["u"]
    assert sorted(hashed) == sorted(salted) == sorted(file_order)
    assert hashed != sorted(hashed) and salted != hashed
    with pytest.raises(ValueError, match="tie_break must be one of"):
        load_dataset(tmp_path / "t.csv", tie_break="id")


def test_parquet_and_json_rows_are_numbered(tmp_path):
    df = pd.DataFrame({"user_id": ["u1", "u2", None], "item_id": ["a", "b", "c"]})
    df.to_parquet(tmp_path / "p.parquet", index=False)
    with pytest.raises(DataError, match=r"p\.parquet, line 3: empty user_id"):
        load_files(tmp_path / "p.parquet")
    write(tmp_path / "j.jsonl", '{"user_id": 1, "item_id": 2}\n\n{"item_id": 3}\n')
    with pytest.raises(DataError, match=r"j\.jsonl, line 3: empty user_id"):
        load_files(tmp_path / "j.jsonl")


def test_iso8601_timestamps(tmp_path):
    write(tmp_path / "iso.csv", "user_id,item_id,timestamp\n"
          "u1,a,2020-01-01T00:00:00Z\nu1,b,2020-01-01 01:00:00\nu1,c,2020-01-01T03:30:00+02:00\n"
          "u1,d,2020-01-02\nu1,e,1577840400.5\n")
    ds = load_files(tmp_path / "iso.csv")
    t0 = 1577836800.0
    assert raw_histories(ds) == {"u1": ["a", "b", "e", "c", "d"]}  # c is 01:30 UTC
    np.testing.assert_allclose(ds.inter["timestamp"], [t0, t0 + 3600, t0 + 3600.5, t0 + 5400,
                                                       t0 + 86400])
    # datetime columns of any unit or time zone give the same seconds
    when = pd.to_datetime(["2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"])
    for col in (when, when.tz_convert("Europe/Paris"), when.tz_localize(None).astype("M8[s]")):
        df = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["x", "y"], "timestamp": col})
        np.testing.assert_allclose(from_dataframe(df).inter["timestamp"], [t0, t0 + 86400])


# -- several domains ----------------------------------------------------------------------------
def test_multi_domain_spec(tmp_path):
    for sub, items in (("a", "i1,i2"), ("b", "i1,i3")):
        rows = "".join(f"u1,{it},{k},{k}\n" for k, it in enumerate(items.split(",")))
        write(tmp_path / sub / "shop" / "interactions.csv",
              "user_id,item_id,timestamp,position\n" + rows)
    spec = f"{tmp_path / 'a' / 'shop'}, {tmp_path / 'b' / 'shop'}"
    a, b = load_datasets(spec)
    assert (a.name, b.name) == ("shop", "shop-2")
    assert list(a.namespaced_item_ids()) == ["shop/i1", "shop/i2"]
    assert list(b.namespaced_item_ids()) == ["shop-2/i1", "shop-2/i3"]
    assert b.item_index("shop-2/i3") == 1 and a.item_index("i2") == 1
    assert not set(a.namespaced_item_ids()) & set(b.namespaced_item_ids())


# -- histories --------------------------------------------------------------------------------
def test_histories_take_last_and_csr_agree(ml100k):
    ds = ml100k
    h = ds.histories()
    assert len(h) == ds.n_users and h.lengths.sum() == ds.n_interactions
    np.testing.assert_array_equal(h.lengths, np.bincount(ds.inter["user_idx"]))
    assert (ds.csr() != h.csr(ds.n_items)).nnz == 0
    rows = np.array([5, 0, 942, 5])
    sub = h.take(rows)
    part = ds.histories(rows)
    np.testing.assert_array_equal(sub.users, rows)
    for k, u in enumerate(rows):
        np.testing.assert_array_equal(sub.row(k), h.row(u))
        np.testing.assert_array_equal(part.row(k), h.row(u))
        mask = ds.inter["user_idx"].to_numpy() == u
        np.testing.assert_array_equal(sub.row(k), ds.inter["item_idx"].to_numpy()[mask])
    assert (sub.csr(ds.n_items) != ds.csr()[rows]).nnz == 0
    last = h.last(3)
    assert (last.lengths == np.minimum(h.lengths, 3)).all()
    for u in (0, 17, 942):
        np.testing.assert_array_equal(last.row(u), h.row(u)[-3:])
    np.testing.assert_array_equal(last.ratings[:3], h.ratings[h.indptr[1] - 3:h.indptr[1]])
    t = last.timestamps
    assert (np.diff(t)[np.diff(np.repeat(np.arange(len(last)), last.lengths)) == 0] >= 0).all()


# -- the real shared data sets --------------------------------------------------------------------
@pytest.mark.skipif(not (SHARED / "amazon_office").is_dir() or
                    not (SHARED / "microlens_50k").is_dir(),
                    reason="shared data not present (../shared/data)")
def test_shared_datasets():
    office, micro = load_datasets(f"{SHARED / 'amazon_office'},{SHARED / 'microlens_50k'}")
    assert (office.n_users, office.n_items, office.n_interactions) == (4905, 2420, 53_258)
    assert office.has_timestamps and office.title_column == "title"
    assert_well_formed(office)
    assert (micro.n_users, micro.n_items, micro.n_interactions) == (50_000, 19_220, 359_708)
    assert not micro.has_timestamps
    u1 = micro.histories([micro.user_index("1")]).row(0)
    assert list(micro.item_ids[u1[:3]]) == ["1958", "6346", "15223"]  # the file's positions
    assert_well_formed(micro)
