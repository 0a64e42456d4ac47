"""Rebuild the built-in ml-100k item -> Freebase entity map (``ml-100k.link.gz``).

RecBole's ml-100k ``.link`` file (from KB4Rec) is keyed by MovieLens-1M movie ids, not by ml-100k
item ids: its rows 260 / 1196 / 1210 are the Star Wars trilogy in MovieLens-1M ids. This script
matches every ml-100k movie (title + year) to its MovieLens-1M id and gives it the entity that the
original file gives for that MovieLens-1M id. Items with no match, several matches, or a match whose
MovieLens-1M id has no entity stay unlinked: nothing is guessed.

Matching: titles are normalised (case, accents, punctuation, a trailing article as in
"Shawshank Redemption, The" moved to the front) and compared together with the year. Tiers, first
that yields a candidate wins: (1) whole title + same year, (2) title without its parenthesised
alternate titles + same year, (3) any alternate title (the main one or one in parentheses) + same
year, (4) a part of the title split at ": " or " - " ("Star Wars: Episode IV - A New Hope") +
same year, (5) tiers 1-3 with the year off by one (ml-100k's year is the release date's, MovieLens-1M's
the film's). A tier that yields two or more MovieLens-1M ids is "ambiguous" and the item stays
unlinked.

Usage::

    python scripts/build_ml100k_links.py --ml1m PATH/ml-1m-movies/movies.dat \
        [--orig-link ORIGINAL.link.gz] [--out src/m6rec/data/builtin/ml-100k/ml-100k.link.gz] \
        [--report benchmarks/results/kg_links/report]

``--orig-link`` defaults to the git-tracked original (``git show <rev>:...link.gz``) through
``--orig-rev``, so running it twice gives the same file.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import subprocess
import unicodedata
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ROOT / "src" / "m6rec" / "data" / "builtin" / "ml-100k"
LINK = "src/m6rec/data/builtin/ml-100k/ml-100k.link.gz"
#: the commit whose ml-100k.link.gz is RecBole's original (keyed by MovieLens-1M ids)
ORIG_REV = "be3e193"
ARTICLES = ("the", "a", "an", "les", "la", "le", "l'", "il", "das", "der", "die", "det", "el",
            "den", "lo", "i")


def norm(title: str) -> str:
    """Lower case, no accents, trailing article moved to the front, only letters and digits."""
    t = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower().strip()
    m = re.match(r"^(.*),\s*(" + "|".join(re.escape(a) for a in ARTICLES) + r")$", t)
    if m:
        t = m.group(2) + " " + m.group(1)
    t = t.replace("&", " and ")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", t).split())


def keys(title: str) -> tuple[set[str], ...]:
    """The normalised keys of each tier: whole title, title without parentheses, every
    alternate title, every part of the title split at ": " and " - "."""
    parts = re.findall(r"\(([^()]*)\)", title)
    main = re.sub(r"\s*\([^()]*\)", "", title).strip()
    alts = {norm(main)} | {norm(re.sub(r"^(a\.k\.a\.|aka)\s+", "", p, flags=re.I)) for p in parts}
    segs = {norm(s) for s in re.split(r":\s+|\s+-\s+", main)}
    return ({norm(title)}, {norm(main)}, {a for a in alts if a}, {s for s in segs if s})


def read_ml1m(path: Path) -> list[tuple[int, str, int]]:
    """(MovieLens-1M id, title without the year, year) per line of ``movies.dat``."""
    out = []
    for line in path.read_text(encoding="latin-1").splitlines():
        mid, title, _ = line.split("::")
        m = re.match(r"^(.*?)\s*\((\d{4})\)$", title.strip())
        if m is None:
            raise ValueError(f"{path}: no year in {title!r}")
        out.append((int(mid), m.group(1), int(m.group(2))))
    return out


def read_tsv_gz(data: bytes) -> list[list[str]]:
    rows = gzip.decompress(data).decode("utf-8").splitlines()
    return [r.split("\t") for r in rows[1:]]


def match(items: list[tuple[str, str, str]], ml1m: list[tuple[int, str, int]]
          ) -> dict[str, tuple[int | None, str]]:
    """ml-100k item id -> (MovieLens-1M id or None, how: tier name or the reason it failed)."""
    index: list[dict[tuple[str, int], set[int]]] = [{}, {}, {}, {}]
    for mid, title, year in ml1m:
        for tier, ks in enumerate(keys(title)):
            for k in ks:
                index[tier].setdefault((k, year), set()).add(mid)
    out: dict[str, tuple[int | None, str]] = {}
    for iid, title, year_s in items:
        in_title = re.match(r"^(.*?)\s*\((\d{4})\)$", title)
        if not year_s.isdigit() and in_title:  # one item has its year in the title
            title, year_s = in_title.group(1), in_title.group(2)
        if not year_s.isdigit():
            out[iid] = (None, "no year in ml-100k")
            continue
        year = int(year_s)
        ks_all = keys(title)
        found: tuple[int | None, str] = (None, "no MovieLens-1M title match")
        for dy, tag in ((0, ""), (-1, " year-1"), (1, " year+1")):
            # a part of a title ("Star Wars: Episode IV - A New Hope") only with the same year
            for tier, ks in enumerate(ks_all if dy == 0 else ks_all[:3]):
                cand = set().union(*(index[tier].get((k, year + dy), set()) for k in ks))
                if len(cand) == 1:
                    found = (next(iter(cand)), f"tier {tier + 1}{tag}")
                    break
                if len(cand) > 1:
                    found = (None, "ambiguous MovieLens-1M match")
                    break
            if found[0] is not None or found[1].startswith("ambiguous"):
                break
        out[iid] = found
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ml1m", type=Path, required=True, help="MovieLens-1M movies.dat")
    ap.add_argument("--orig-link", type=Path, default=None,
                    help="RecBole's original link file (default: from git, --orig-rev)")
    ap.add_argument("--orig-rev", default=ORIG_REV)
    ap.add_argument("--out", type=Path, default=ROOT / LINK)
    ap.add_argument("--report", type=Path, default=ROOT / "benchmarks/results/kg_links/report")
    a = ap.parse_args()

    if a.orig_link is not None:
        orig_bytes = a.orig_link.read_bytes()
    else:
        orig_bytes = subprocess.run(["git", "show", f"{a.orig_rev}:{LINK}"], cwd=ROOT,
                                    check=True, capture_output=True).stdout
    entity_of = {int(r[0]): r[1] for r in read_tsv_gz(orig_bytes)}
    items = [(r[0], r[1], r[2]) for r in
             read_tsv_gz((BUILTIN / "ml-100k.item.gz").read_bytes())]
    ml1m = read_ml1m(a.ml1m)
    ml1m_title = {mid: f"{t} ({y})" for mid, t, y in ml1m}
    m = match(items, ml1m)

    rows, status, detail = [], Counter(), []
    for iid, title, year in items:
        mid, how = m[iid]
        ent = entity_of.get(mid) if mid is not None else None
        if mid is not None and ent is None:
            how = "MovieLens-1M id without entity"
        if ent is not None:
            rows.append((iid, ent))
            status["linked"] += 1
            status["linked, " + how] += 1
        else:
            status["unlinked, " + how] += 1
        detail.append({"item_id": iid, "title": title, "year": year, "ml1m_id": mid,
                       "entity_id": ent, "how": how})
    ent_count = Counter(e for _, e in rows)
    shared = sorted([(e, [d["item_id"] for d in detail if d["entity_id"] == e])
                     for e, n in ent_count.items() if n > 1])

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        text = "item_id:token\tentity_id:token\n" + "".join(f"{i}\t{e}\n" for i, e in rows)
        f.write(text.encode())
    a.out.write_bytes(buf.getvalue())

    summary = {"items": len(items), "linked": status["linked"],
               "unlinked": len(items) - status["linked"],
               "by_reason": {k: v for k, v in sorted(status.items()) if k != "linked"},
               "items_sharing_an_entity": [{"entity_id": e, "item_ids": ids} for e, ids in shared]}
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = ["# ml-100k item -> Freebase entity links (rebuilt)", "",
             "Command: `python scripts/build_ml100k_links.py --ml1m ml-1m-movies/movies.dat`", "",
             f"**{summary['linked']} of {len(items):,} items linked, {summary['unlinked']} "
             "unlinked.**", "", "| outcome | items |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in summary["by_reason"].items()]
    lines += ["", "Tier 1: whole title + year; 2: title without parenthesised alternates + year; "
              "3: an alternate title + year; 4: a part of the title split at ': ' or ' - ' + year; "
              "'year±1': tiers 1-3 with the year off by one.", "",
              "Items that share one entity (ml-100k lists these films twice): "
              + ", ".join("/".join(ids) for _, ids in shared), "",
              "## Unlinked items", "", "| item_id | title | year | reason |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {d['item_id']} | {d['title']} | {d['year']} | {d['how']} |"
              for d in detail if d["entity_id"] is None]
    lines += ["", "## Linked by a tier other than 1 (to audit by eye)", "",
              "| item_id | ml-100k title | year | MovieLens-1M title | tier |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {d['item_id']} | {d['title']} | {d['year']} | {ml1m_title[d['ml1m_id']]} | "
              f"{d['how']} |" for d in detail if d["entity_id"] is not None
              and d["how"] != "tier 1"]
    a.report.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(json.dumps({k: summary[k] for k in ("items", "linked", "unlinked", "by_reason")},
                     indent=1))


if __name__ == "__main__":
    main()
