"""Write the corpus of bad input files under tests/data/bad/ (one problem per file).

The files are committed; run ``python tests/data/make_bad.py`` only to regenerate them. Each one is
a few lines long and holds exactly one problem, which ``test_bad_files.py`` expects by file, line
and wording.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

BAD = Path(__file__).parent / "bad"

# name -> content (str is written as UTF-8, bytes as they are)
FILES: dict[str, str | bytes] = {
    # -- CSV interactions ------------------------------------------------------------------------
    "missing_user_id.csv": "uid,item_id,timestamp\nu1,i1,1\nu2,i2,2\n",
    # loaded with columns={"user_id": "user", "item_id": "asin"}: there is no 'asin'
    "missing_item_id_mapped.csv": "user,product,ts\nu1,i1,1\nu2,i2,2\n",
    "bad_timestamp.csv": "user_id,item_id,timestamp\nu1,i1,100\nu1,i2,yesterday\nu2,i1,300\n",
    "bad_rating.csv": ("user_id,item_id,rating,timestamp\nu1,i1,4,1\nu1,i2,3.5,2\n"
                       "u2,i1,five,3\n"),
    "infinite_rating.csv": "user_id,item_id,rating,timestamp\nu1,i1,inf,1\nu1,i2,3,2\n",
    "empty.csv": b"",
    "header_only.csv": "user_id,item_id,timestamp,position\n",
    "non_utf8.csv": b"user_id,item_id,timestamp\nu1,i1,1\nu\xe9,i2,2\n",
    "wrong_field_count.csv": "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2,extra\n",
    "empty_user_id.csv": "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\n ,i3,3\n",
    "mixed_timestamps.csv": ("user_id,item_id,timestamp,position\nu1,i1,10,0\nu1,i2,,1\n"
                             "u2,i1,30,0\n"),
    "duplicate_column.csv": "user_id,item_id,item_id\nu1,i1,i1\n",
    "unclosed_quote.csv": 'user_id,item_id,timestamp\nu1,i1,1\nu2,"i2,2\nu3,i3,3\n',
    "iso_typo.csv": "user_id,item_id,timestamp\nu1,i1,2020-01-01T10:00:00\nu1,i2,2020-13-01\n",
    "no_position.csv": "user_id,item_id,timestamp,position\nu1,i1,,0\nu1,i2,,\n",
    # -- JSON ----------------------------------------------------------------------------------
    "bad_json.jsonl": ('{"user_id": "u1", "item_id": "i1", "timestamp": 1}\n'
                       '{"user_id": "u1", "item_id": "i2", "timestamp": 2}\n'
                       '{"user_id": "u2", "item_id": "i1", "timestamp": 3,}\n'),
    "not_object.jsonl": '{"user_id": "u1", "item_id": "i1"}\n["u2", "i2"]\n',
    "bad_array.json": ('[\n  {"user_id": "u1", "item_id": "i1"},\n'
                       '  {"user_id": "u2", "item_id": "i2"}\n  {"user_id": "u3"}\n]\n'),
    "corrupt.parquet": b"PAR1 this is not really a parquet file PAR1",
    # -- RecBole atomic files ----------------------------------------------------------------
    "recbole_bad_type/bad.inter": "user_id:tokn\titem_id:token\trating:float\nu1\ti1\t3\n",
    "recbole_no_type/notype.inter": "user_id:token\titem_id\trating:float\nu1\ti1\t3\n",
    "recbole_float_text/ft.inter": ("user_id:token\titem_id:token\trating:float\n"
                                    "u1\ti1\t3\nu1\ti2\tgood\n"),
    "recbole_field_count/fc.inter": ("user_id:token\titem_id:token\trating:float\t"
                                     "timestamp:float\nu1\ti1\t3\t1\nu1\ti2\t4\t2\nu2\ti1\n"),
    "recbole_link_two/kg2.inter": "user_id:token\titem_id:token\nu1\ti1\nu1\ti2\n",
    "recbole_link_two/kg2.kg": ("head_id:token\trelation_id:token\ttail_id:token\n"
                                "m.01\tfilm.genre\tm.99\nm.02\tfilm.genre\tm.99\n"),
    "recbole_link_two/kg2.link": ("item_id:token\tentity_id:token\ni1\tm.01\ni2\tm.02\n"
                                  "i1\tm.03\n"),
    "recbole_kg_no_link/nolink.inter": "user_id:token\titem_id:token\nu1\ti1\n",
    "recbole_kg_no_link/nolink.kg": "head_id:token\trelation_id:token\ttail_id:token\na\tr\tb\n",
    # -- shared folder layout (interactions + items [+ users]) ---------------------------------
    "folder_dup_item/interactions.csv": "user_id,item_id,timestamp,position\nu1,i1,1,0\n",
    "folder_dup_item/items.csv": ("item_id,title\ni1,Red stapler\ni2,Blue pen\ni1,Red stapler\n"
                                  "i2,Black pen\n"),
    "folder_unknown_item/interactions.csv": ("user_id,item_id,timestamp,position\nu1,i1,1,0\n"
                                             "u1,i9,2,1\n"),
    "folder_unknown_item/items.csv": "item_id,title\ni1,Red stapler\ni2,Blue pen\n",
    "folder_dup_user/interactions.csv": "user_id,item_id,timestamp,position\nu1,i1,1,0\n",
    "folder_dup_user/items.csv": "item_id,title\ni1,Red stapler\n",
    "folder_dup_user/users.csv": "user_id,age\nu1,31\nu2,25\nu1,32\n",
    "folder_items_no_id/interactions.csv": "user_id,item_id,timestamp,position\nu1,i1,1,0\n",
    "folder_items_no_id/items.csv": "asin,title\ni1,Red stapler\n",
    "folder_items_latin1/interactions.csv": "user_id,item_id,timestamp,position\nu1,i1,1,0\n",
}

# gzip cases: name -> (content, how to break it: truncate / plain (not compressed) / crc / ok)
GZIP: dict[str, tuple[bytes, str]] = {
    "truncated.csv.gz": (b"user_id,item_id,timestamp\n" + b"".join(
        f"u{i},i{i},{i}\n".encode() for i in range(40)), "truncate"),
    "not_gzip.csv.gz": (b"user_id,item_id,timestamp\nu1,i1,1\n", "plain"),
    "corrupt_crc.csv.gz": (b"user_id,item_id,timestamp\nu1,i1,1\n", "crc"),
    "folder_items_latin1/items.csv.gz": (b"item_id,title\ni1,Red stapler\ni2,Caf\xe9 mug\n", "ok"),
}


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def main() -> None:
    if BAD.exists():
        shutil.rmtree(BAD)
    for name, content in FILES.items():
        p = BAD / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    for name, (data, how) in GZIP.items():
        p = BAD / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if how == "plain":
            p.write_bytes(data)
        elif how == "truncate":
            z = _gzip(data)
            p.write_bytes(z[: len(z) // 2])
        elif how == "crc":
            z = bytearray(_gzip(data))
            z[-8] ^= 0xFF  # first byte of the CRC32 trailer
            p.write_bytes(bytes(z))
        else:
            p.write_bytes(_gzip(data))


if __name__ == "__main__":
    main()
