"""The changing feeds of the soak (``bench/soak.py``), served on 127.0.0.1 by a process of their own (standard library
only, so that it starts at once and no load of the soak slows its answers).

``/<feed>.rss`` holds the feed's latest ``WINDOW`` items, one more every ``--item-seconds``. Each answer is drawn from
``MODES``: ``ok`` (the document with an ETag, or 304 when the request's If-None-Match is still current), ``timeout``
(no answer for ``TIMEOUT_SLEEP_S`` s, past the worker's ``FEED_TIMEOUT_S``), ``malformed`` (JSON served as RSS:
feedparser finds no entry) or ``error`` (503). Every answer appends one JSON line to ``--log`` once it is sent; an
``ok`` line lists the links of the items it carried, which the soak then expects stored exactly once.

Usage: python bench/soak_feeds.py --log FILE --feeds soak_1 soak_2 [--item-seconds 10] [--seed 13]
(prints the port, then serves until SIGTERM)
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from email.utils import formatdate
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENTITIES = {"NWT": ["Northwind Traders", "Northwind"], "CTSO": ["Contoso Freight", "Contoso"], "FBKM": ["Fabrikam"]}
FEED_TIMEOUT_S = 2.0  # the worker's timeout per request (the soak's feeds file)
TIMEOUT_SLEEP_S = 5.0
MODES = {"ok": 0.75, "timeout": 0.08, "malformed": 0.10, "error": 0.07}
WINDOW = 20  # items per document: an item that a failed poll missed comes again in the next good answer
MALFORMED = b'{"error": "upstream unavailable"}'
NEWS = {  # (title, summary) with the company's name; the tone varies so that the alert rules have something to see
    "negative": ("{name} shares plunge after profit warning", "{name} cut its outlook and warned of heavy losses. "
                 "Analysts expect weak demand and falling margins for {name}."),
    "positive": ("{name} beats estimates and raises its dividend", "{name} reported record profit and strong growth. "
                 "The board raised the dividend as sales rose sharply."),
    "neutral": ("{name} schedules its annual meeting", "{name} said its annual meeting will take place in May. "
                "The agenda will be published on the company website."),
}


def item(feed: str, n: int, t0: float, item_seconds: float) -> dict:
    """Item ``n`` of ``feed`` (the same on every answer): a unique guid, link and title."""
    rng = random.Random(f"{feed}-{n}")
    ticker, tone = rng.choice(sorted(ENTITIES)), rng.choice(sorted(NEWS))
    title, summary = (s.format(name=ENTITIES[ticker][0]) for s in NEWS[tone])
    return {"guid": f"{feed}-{n:05d}", "link": f"http://soak.example/{feed}/{n}", "title": f"{title} ({feed} #{n})",
            "summary": summary, "published": formatdate(t0 + n * item_seconds, usegmt=True)}


def document(feed: str, items: list[dict]) -> bytes:
    """An RSS 2.0 document of ``items``."""
    entries = "".join(f"<item><guid>{i['guid']}</guid><link>{i['link']}</link><title>{escape(i['title'])}</title>"
                      f"<description>{escape(i['summary'])}</description><pubDate>{i['published']}</pubDate></item>"
                      for i in items)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{feed}</title>'
            f"<link>http://soak.example/{feed}</link><description>soak feed</description>{entries}</channel></rss>"
            ).encode()


def server(feeds: list[str], item_seconds: float, seed: int, log_path: str) -> ThreadingHTTPServer:
    """The server on a free port of 127.0.0.1 (call ``serve_forever``)."""
    t0 = time.time()
    rng, lock = random.Random(seed), threading.Lock()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process

    def record(**event) -> None:
        with lock:
            log.write(json.dumps({"t": round(time.time() - t0, 3), **event}) + "\n")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            feed = self.path.strip("/").removesuffix(".rss")
            if feed not in feeds:
                self.send_error(404)
                return
            with lock:
                mode = rng.choices(list(MODES), weights=list(MODES.values()))[0]
            latest = int((time.time() - t0) / item_seconds)
            etag = f'"{feed}-{latest}"'
            if mode == "timeout":
                time.sleep(TIMEOUT_SLEEP_S)  # the worker has given up by now: close without an answer
                record(feed=feed, mode=mode)
                return
            if mode == "error":
                self.send_error(503)
                record(feed=feed, mode=mode)
                return
            if mode == "ok" and self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                record(feed=feed, mode="not_modified")
                return
            items = [item(feed, n, t0, item_seconds) for n in range(max(0, latest - WINDOW + 1), latest + 1)]
            body = document(feed, items) if mode == "ok" else MALFORMED
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            if mode == "ok":
                self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            record(feed=feed, mode=mode, items=[i["link"] for i in items] if mode == "ok" else [])

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    return httpd


def feeds_toml(feeds: list[str], port: int, poll_seconds: float = 2.0) -> str:
    """The worker's feeds file for these feeds on ``port``, with the entities their items name."""
    return ("".join(f'[[feeds]]\nname = "{n}"\nurl = "http://127.0.0.1:{port}/{n}.rss"\npoll_seconds = {poll_seconds}'
                    f"\ntimeout_seconds = {FEED_TIMEOUT_S}\n\n" for n in feeds)
            + "[entities]\n" + "".join(f"{t} = {json.dumps(v)}\n" for t, v in ENTITIES.items()))


def read_log(path) -> list[dict]:
    """The answers logged so far (a line cut by the server's stop is skipped)."""
    events = []
    for line in open(path).read().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", nargs="+", required=True)
    ap.add_argument("--item-seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    httpd = server(args.feeds, args.item_seconds, args.seed, args.log)
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
