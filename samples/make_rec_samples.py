"""Write the recommender's sample data: a fictional film catalogue and the viewing histories of its users.

``python samples/make_rec_samples.py`` rewrites ``samples/rec_items.csv`` and ``samples/rec_interactions.csv``
(seeded, so the files come out the same every time). The histories have structure a sequential model can learn and a
popularity count cannot: each user prefers one or two genres, watches the parts of a series in order, and tends to
follow a film with its "companion" (the next title of the same genre). Some users have only one or two interactions,
and some interactions share a timestamp (ties), so that the sample data exercises those rules too.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GENRES = ("Mystery", "Comedy", "Sci-Fi", "Drama", "Documentary", "Animation", "Romance", "Thriller")
WORDS = {
    "Mystery": ["The Copper Key", "Fog over Marlow", "The Ninth Lantern", "A Quiet Alibi", "The Glass Orchard",
                "Whispers at Dunmore"],
    "Comedy": ["Uncle Bertram's Bicycle", "Two Left Shoes", "The Wedding Caterers", "Pancakes at Midnight",
               "Office Party Rules", "The Accidental Mayor"],
    "Sci-Fi": ["Orbit of Ash", "The Tenth Moon", "Signal from Vega", "Clockwork Tides", "Outpost Seven",
               "The Silent Array"],
    "Drama": ["A House on Elm Row", "The Long Winter", "Letters to Iris", "The Ferryman's Son", "Salt and Stone",
              "Last Train to Arden"],
    "Documentary": ["Rivers of the North", "The Bee Keepers", "Inside the Glacier", "Night Markets",
                    "Cathedral Builders", "The Salt Road"],
    "Animation": ["Pip and the Paper Boat", "The Cloud Shepherd", "Tin Fox", "Moonberry Lane", "The Lantern Owls",
                  "Captain Pebble"],
    "Romance": ["Summer in Lisbon", "The Bookshop Letters", "Two Tickets to Oslo", "A Song for Clara",
                "Harbour Lights", "The Last Dance Card"],
    "Thriller": ["Cold Harbour", "The Fifth Witness", "Deadline at Dawn", "Black Ice Protocol", "The Courier",
                 "Vanishing Point"],
}
SERIES = [("The Star Cartographers", ("Sci-Fi", "Animation")), ("Inspector Vale", ("Mystery", "Thriller")),
          ("The Baker Sisters", ("Comedy", "Romance"))]


def catalogue() -> list[dict]:
    items, n = [], 1
    for g in GENRES:
        for i, title in enumerate(WORDS[g]):
            extra = GENRES[(GENRES.index(g) + 1) % len(GENRES)] if i % 3 == 2 else None
            items.append({"item_id": str(n), "title": title, "genres": "|".join([g] + ([extra] if extra else []))})
            n += 1
    for name, gs in SERIES:
        for part in ("", " II", " III"):
            items.append({"item_id": str(n), "title": name + part, "genres": "|".join(gs)})
            n += 1
    items.append({"item_id": str(n), "title": "The Unwatched Reel", "genres": "Documentary|Drama"})  # no views
    return items


def histories(items: list[dict], n_users: int = 160, seed: int = 7) -> list[dict]:
    rng = np.random.default_rng(seed)
    by_genre = {g: [it for it in items if it["genres"].split("|")[0] == g and it["title"] != "The Unwatched Reel"]
                for g in GENRES}
    series = {name: [it for it in items if it["title"].startswith(name)] for name, _ in SERIES}
    rows, t0 = [], 1_700_000_000
    for u in range(1, n_users + 1):
        likes = list(rng.choice(GENRES, size=rng.integers(1, 3), replace=False))
        n = 1 if u % 40 == 0 else 2 if u % 40 == 1 else int(rng.integers(4, 22))
        seen, seq = set(), []
        while len(seq) < n:
            r = rng.random()
            if r < 0.25:  # the next unseen part of a series whose genres the user likes (else any series)
                name = next((s for s, gs in SERIES if set(gs) & set(likes)), SERIES[int(rng.integers(3))][0])
                nxt = [it for it in series[name] if it["item_id"] not in seen]
                pick = nxt[0] if nxt else None
            elif r < 0.55 and seq:  # the companion: the next title of the same genre as the last one
                last = seq[-1]
                pool = by_genre[last["genres"].split("|")[0]]
                j = pool.index(last) + 1 if last in pool else 0
                pick = pool[j % len(pool)] if pool else None
            elif r < 0.9:
                pool = by_genre[likes[int(rng.integers(len(likes)))]]
                pick = pool[int(rng.integers(len(pool)))]
            else:
                pick = items[int(rng.integers(len(items) - 1))]
            if pick is None or pick["item_id"] in seen:
                if len(seen) >= len(items) - 1 or rng.random() < 0.3:
                    pick = next(it for it in items[:-1] if it["item_id"] not in seen)
                else:
                    continue
            seen.add(pick["item_id"])
            seq.append(pick)
        t = t0 + int(rng.integers(0, 10_000_000))
        for it in seq:
            t += 0 if rng.random() < 0.1 else int(rng.integers(60, 200_000))  # 10% share the previous timestamp
            rows.append({"user_id": f"u{u:03d}", "item_id": it["item_id"], "timestamp": t,
                         "rating": int(rng.integers(3, 6) if it["genres"].split("|")[0] in likes else
                                       rng.integers(1, 5))})
    order = rng.permutation(len(rows))  # files are rarely sorted: the reader sorts
    return [rows[i] for i in order]


def main() -> None:
    items = catalogue()
    with (HERE / "rec_items.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["item_id", "title", "genres"])
        w.writeheader()
        w.writerows(items)
    with (HERE / "rec_interactions.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["user_id", "item_id", "timestamp", "rating"])
        w.writeheader()
        w.writerows(histories(items))


if __name__ == "__main__":
    main()
