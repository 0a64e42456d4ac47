"""Templates: items, profiles and behaviour as text, on ml-100k and on small made-up catalogues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.data import from_dataframe
from m6rec.text import (
    Templates,
    behaviour_text,
    item_texts,
    user_profile_text,
    user_text,
    user_texts,
)

DAY = 86400.0


def _dataset(items: pd.DataFrame, name: str = "shop"):
    inter = pd.DataFrame({"user_id": ["u1"] * len(items), "item_id": items["item_id"],
                          "timestamp": np.arange(len(items), dtype=float) * DAY})
    return from_dataframe(inter, items=items, name=name)


def test_ml100k_item_text(ml100k):
    i = ml100k.item_index("1")
    text = item_texts(ml100k)[i]
    assert text == "Toy Story (1995; Animation, Children's, Comedy)"
    assert item_texts(ml100k, items=[i]) == [text]


def test_ml100k_profile(ml100k):
    assert user_profile_text(ml100k, ml100k.user_index("1")) == "A 24 year old male technician."
    assert user_profile_text(ml100k, -1) == ""


def test_article_follows_the_sound():
    users = pd.DataFrame({"age": ["18", "30", ""], "gender": ["F", "M", ""],
                          "occupation": ["artist", "engineer", "executive"]})
    inter = pd.DataFrame({"user_id": ["0", "1", "2"], "item_id": ["a", "a", "a"]})
    ds = from_dataframe(inter, name="x")
    ds.users = users.iloc[[int(u) for u in ds.user_ids]].reset_index(drop=True)
    texts = [user_profile_text(ds, ds.user_index(u)) for u in ("0", "1", "2")]
    assert texts == ["An 18 year old female artist.", "A 30 year old male engineer.",
                     "An executive."]


def test_behaviour_with_ratings_and_time(ml100k):
    toy, golden = ml100k.item_index("1"), ml100k.item_index("2")
    now = 1_000_000_000.0
    text = behaviour_text(ml100k, [golden, toy], timestamps=[now - 10 * DAY, now - 3 * DAY],
                          ratings=[3, 5], now=now)
    assert text == ("Watched Toy Story (1995; Animation, Children's, Comedy), rated 5, 3 days ago. "
                    "Watched GoldenEye (1995; Action, Adventure, Thriller), rated 3, 10 days ago.")
    # oldest first when asked, only the most recent max_items, no time without timestamps
    t = Templates(recent_first=False)
    assert behaviour_text(ml100k, [golden, toy], max_items=1, templates=t).startswith(
        "Watched Toy Story (1995")
    assert behaviour_text(ml100k, [golden, toy], ratings=[3.5, np.nan], templates=t) == (
        "Watched GoldenEye (1995; Action, Adventure, Thriller), rated 3.5. "
        "Watched Toy Story (1995; Animation, Children's, Comedy).")
    assert behaviour_text(ml100k, []) == ""


def test_user_text_is_profile_then_behaviour(ml100k):
    u = ml100k.user_index("1")
    text = user_text(ml100k, u, max_items=3)
    assert text.startswith("A 24 year old male technician. Watched ")
    assert text.count("Watched") == 3 and "rated" in text
    h = ml100k.histories(np.array([u, u]))
    assert user_texts(ml100k, h, max_items=3) == [text, text]


def test_custom_templates_change_the_output(ml100k, tmp_path):
    toy = ml100k.item_index("1")
    t = Templates(item_details=" [{details}]", details_separator=" | ", category_separator="/",
                  profile="User: {who}.", event="{verb} {item}{rating}.", rating=" ({rating}/5)",
                  verbs={"ml-": "Saw"})
    assert item_texts(ml100k, t, items=[toy]) == ["Toy Story [1995 | Animation/Children's/Comedy]"]
    assert user_profile_text(ml100k, ml100k.user_index("1"), t) == (
        "User: 24 year old male technician.")
    assert behaviour_text(ml100k, [toy], ratings=[4], templates=t) == (
        "Saw Toy Story [1995 | Animation/Children's/Comedy] (4/5).")
    # templates are plain data: a JSON file round-trips, partial files keep defaults
    path = tmp_path / "templates.json"
    t.save(path)
    assert Templates.load(path) == t
    path.write_text('{"item_parts": ["title"]}')
    assert item_texts(ml100k, Templates.load(path), items=[toy]) == ["Toy Story"]
    path.write_text('{"item_title": "{title}", "not_a_field": 1}')
    with pytest.raises(ValueError, match="not_a_field"):
        Templates.load(path)


def test_amazon_like_catalogue_budget_and_brand():
    items = pd.DataFrame({
        "item_id": ["a", "b", "c"],
        "title": ["HP 12C Financial Calculator", "Desk Lamp", ""],
        "description": ["word " * 500, "A bright lamp.", ""],
        "categories": ["Office Electronics, Calculators", "Office Furniture & Lighting, Lamps",
                       "Office & School Supplies"],
        "brand": ["HP", "Lumina", "Unknown"]})
    ds = _dataset(items, name="amazon_office")
    texts = item_texts(ds, budget=200)
    assert texts[0].startswith("HP 12C Financial Calculator (Office Electronics, Calculators). "
                               "word word")  # brand already in the title: not repeated
    assert len(texts[0]) <= 200 and texts[0].endswith("...")
    assert texts[1] == ("Desk Lamp by Lumina (Office Furniture & Lighting, Lamps). A bright lamp.")
    assert texts[2] == "Item c (Office & School Supplies)"  # no title, "Unknown" brand skipped
    assert behaviour_text(ds, [0, 1], timestamps=[0, DAY], now=4 * DAY).startswith(
        "Bought Desk Lamp (Office Furniture & Lighting, Lamps), 3 days ago. Bought HP 12C")


def test_lastfm_tags_and_urls_and_unknown_domain():
    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["MALICE MIZER", "Diary of Dreams"],
                          "tags": ["j-rock|visual kei|gothic", "darkwave|german|gothic"],
                          "url": ["http://www.last.fm/music/MALICE+MIZER", "http://x"]})
    ds = _dataset(items, name="lastfm")
    assert item_texts(ds) == ["MALICE MIZER (j-rock, visual kei, gothic)",
                              "Diary of Dreams (darkwave, german, gothic)"]
    assert behaviour_text(ds, [0]).startswith("Listened to MALICE MIZER")
    assert behaviour_text(_dataset(items, name="zzz"), [0]).startswith("Interacted with MALICE")


def test_unknown_catalogue_falls_back_to_text_columns():
    items = pd.DataFrame({"item_id": ["p", "q"], "headline": ["Rain tomorrow", "Team wins cup"],
                          "section": ["weather", "sport"], "image": ["x.png", "y.png"]})
    ds = _dataset(items)
    assert item_texts(ds) == ["headline: Rain tomorrow. section: weather",
                              "headline: Team wins cup. section: sport"]
    titled = pd.DataFrame({"item_id": ["p"], "title": ["Song"], "album": ["Blue"]})
    assert item_texts(_dataset(titled)) == ["Song. album: Blue"]


def test_events_pick_the_verb(ml100k):
    toy = ml100k.item_index("1")
    text = behaviour_text(ml100k, [toy, toy], events=["click", "purchase"])
    assert text.startswith("Bought Toy Story") and "Clicked Toy Story" in text
