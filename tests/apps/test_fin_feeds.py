"""Feed polling against a local HTTP server that serves the captured finance feeds (and broken variants of them)."""

from __future__ import annotations

import hashlib
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import pytest

from apps.common.settings import REPO_ROOT, CoreSettings
from apps.finance_sentiment.feeds import (
    Article,
    Deduper,
    FeedConfig,
    FeedConfigError,
    FeedPoller,
    FeedState,
    TickerMatcher,
    backoff_delay,
    clean_text,
    content_hash,
    health_table,
    load_feeds_file,
)

FEED_FILES = (
    "cnbc_international_top_news_2026-03-08.rss",
    "seekingalpha_AAPL_2026-03-08.rss",
    "nytimes_business_2026-03-08.rss",
    "googlenews_reuters_markets_2026-03-13.rss",
    "reuters_business_news_2019-01-19.rss",
    "sec_press_releases.rss",
    "sec_testimony.rss",
    "sec_xbrl_usgaap.rss",
    "edgar_company_filings_atom_1.xml",
    "edgar_company_filings_atom_2.xml",
)
CNBC = "cnbc_international_top_news_2026-03-08.rss"
ENTITIES = {"AAPL": ["Apple", "Apple Inc", "iPhone maker"], "MSFT": ["Microsoft"], "META": ["Meta Platforms"]}
T0 = 1_700_000_000.0
TAG = re.compile(r"<[A-Za-z/!?]")
ITEM = re.compile(rb"<item>.*?</item>", re.DOTALL)

# --------------------------------------------------------------------------------------------------------------------
# Fixtures: captured data, a fake clock, a local feed server
# --------------------------------------------------------------------------------------------------------------------


def _feeds_dir() -> Path:
    return CoreSettings().data_dir / "finance_feeds"


def _captured(name: str) -> bytes:
    """The bytes of a captured feed; skips the test when the data set is absent."""
    path = _feeds_dir() / name
    if not path.is_file():
        pytest.skip(f"captured feed {name} not found in {_feeds_dir()} (../shared/datasets/finance_feeds)")
    return path.read_bytes()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Route:
    """How the server answers one path. Successive GETs get successive bodies; the last one repeats."""

    bodies: list[bytes] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    hits: int = 0
    headers_seen: list[dict[str, str]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _FeedHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        try:
            self._answer()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout route)

    def _answer(self) -> None:
        route = self.server.routes.get(self.path)
        if route is None:
            self._send(404)
            return
        route.headers_seen.append({key.lower(): value for key, value in self.headers.items()})
        index = min(route.hits, len(route.bodies) - 1)
        route.hits += 1
        if route.delay and self.server.stopping.wait(route.delay):
            return
        if route.status != 200:
            self._send(route.status)
            return
        body = route.bodies[index]
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        if self.headers.get("If-None-Match") == etag:
            self._send(304, {"ETag": etag})
            return
        last_modified = formatdate(T0 + 60 * index, usegmt=True)
        self._send(200, {"ETag": etag, "Last-Modified": last_modified, "Content-Type": "application/rss+xml"}, body)

    def _send(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


class _FeedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.stopping = threading.Event()


class FeedServer:
    """The test's handle on the server: add routes, get their URLs."""

    def __init__(self, httpd: _FeedHTTPServer) -> None:
        self._httpd = httpd
        self.base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def add(self, path: str, *bodies: bytes, status: int = 200, delay: float = 0.0) -> Route:
        route = Route(bodies=list(bodies) or [b""], status=status, delay=delay)
        self._httpd.routes[path] = route
        return route

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def server() -> Iterator[FeedServer]:
    httpd = _FeedHTTPServer()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield FeedServer(httpd)
    finally:
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=2)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy set in the environment must not intercept loopback requests.
    with httpx.Client(trust_env=False) as http:
        yield http


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _feed(url: str, name: str = "feed", **kwargs: object) -> FeedConfig:
    return FeedConfig(url=url, name=name, **kwargs)


def _poller(feeds: list[FeedConfig], client: httpx.Client, clock: FakeClock) -> FeedPoller:
    return FeedPoller(feeds, ENTITIES, client=client, clock=clock)


def _rss(items: list[dict[str, str]]) -> bytes:
    """A small RSS 2.0 document; item keys are element names (title, link, guid, description, pubDate)."""
    body = "".join("<item>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in item.items()) + "</item>"
                   for item in items)
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>'
            f"<link>https://example.com/</link><description>d</description>{body}</channel></rss>").encode()


# --------------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------------


def test_sample_feeds_file_lists_the_ten_captured_feeds():
    feeds, entities = load_feeds_file(REPO_ROOT / "samples" / "feeds.toml")
    assert [feed.url.rsplit("/", 1)[1] for feed in feeds] == list(FEED_FILES)
    assert all(feed.url.startswith("http://127.0.0.1:8765/") for feed in feeds)
    assert len({feed.name for feed in feeds}) == 10
    assert set(entities) == {"AAPL", "MSFT", "AMZN", "GOOGL", "TSLA", "JPM", "NVDA", "META"}
    assert entities["AAPL"] == ["Apple", "Apple Inc", "iPhone maker"]
    sa = next(feed for feed in feeds if "seekingalpha" in feed.url)
    assert sa.tickers == ["AAPL"]
    assert (sa.poll_seconds, sa.timeout_seconds) == (300, 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "feeds file not found"),
        ('[[feeds]]\nname = "a"\nurl = \n', "invalid TOML: .*line 3"),
        ('[[feeds]]\nname = "a"\n', r"feed #1 \('a'\) has no url"),
        ('[[feeds]]\nname = "a"\nurl = "http://x/1"\n[[feeds]]\nname = "a"\nurl = "http://x/2"\n',
         "duplicate feed name 'a' \\(feeds #1 and #2\\)"),
        ('[[feeds]]\nname = "a"\nurl = "ftp://x/1"\n', "feed #1 \\('a'\\): url: url must be an absolute http"),
        ('[[feeds]]\nname = "a"\nurl = "http://x/1"\npoll_seconds = 0\n', "poll_seconds: Input should be greater"),
        ('[[feeds]]\nname = "a"\nurl = "http://x/1"\n[entities]\nAAPL = 3\n', "entities.AAPL: .*names must be"),
        ('[[feed]]\nname = "a"\nurl = "http://x/1"\n', "unknown top-level key"),
    ],
    ids=["missing", "syntax", "no-url", "duplicate", "scheme", "poll", "entities", "typo"],
)
def test_feeds_file_errors_are_one_line(tmp_path, text, expected):
    path = tmp_path / "feeds.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(FeedConfigError, match=expected) as info:
        load_feeds_file(path)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_yaml_feeds_file_reads_like_toml(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n  - name: a\n    url: http://x/a\n    tickers: [aapl]\nentities:\n  AAPL: [Apple]\n")
    feeds, entities = load_feeds_file(path)
    assert feeds == [FeedConfig(name="a", url="http://x/a", tickers=["AAPL"])]
    assert entities == {"AAPL": ["Apple"]}
    path.write_text("feeds:\n  - name: a\n   url: [\n")
    with pytest.raises(FeedConfigError, match="invalid YAML at line 3"):
        load_feeds_file(path)


def test_yaml_without_pyyaml_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` raise ImportError
    path = tmp_path / "feeds.yml"
    path.write_text("feeds: []\n")
    with pytest.raises(FeedConfigError, match="needs PyYAML"):
        load_feeds_file(path)


# --------------------------------------------------------------------------------------------------------------------
# Parsing the captured feeds
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.data
@pytest.mark.parametrize("file_name", FEED_FILES)
def test_every_captured_feed_parses_into_clean_articles(server, client, clock, file_name):
    body = _captured(file_name)
    server.add(f"/{file_name}", body)
    feed = _feed(server.url(f"/{file_name}"), name=file_name)
    state = FeedState()
    result = _poller([feed], client, clock).poll(feed, state)
    assert (result.status, result.error, result.http_status) == ("ok", None, 200)
    articles = result.articles
    assert len(articles) > 0
    assert len({a.id for a in articles}) == len(articles)
    for article in articles:
        assert article.published is None or article.published.utcoffset() == timedelta(0)
        assert article.seen_at == datetime.fromtimestamp(T0, tz=UTC)
        assert not TAG.search(article.summary), article.summary
        assert not TAG.search(article.title), article.title
        assert article.source == file_name
        assert re.fullmatch(r"[0-9a-f]{64}", article.content_hash)
    assert state.entries_seen == len(articles)
    assert state.etag and state.last_modified and state.failures == 0
    assert state.next_poll_at == T0 + 300


@pytest.mark.data
def test_second_poll_with_validators_is_not_modified(server, client, clock):
    route = server.add("/cnbc.rss", _captured(CNBC))
    feed = _feed(server.url("/cnbc.rss"))
    poller = _poller([feed], client, clock)
    state = FeedState()
    assert poller.poll(feed, state).status == "ok"
    clock.now += 300
    second = poller.poll(feed, state)
    assert (second.status, second.articles, second.http_status) == ("not_modified", [], 304)
    assert route.headers_seen[1]["if-none-match"] == state.etag
    assert route.headers_seen[1]["if-modified-since"] == state.last_modified
    assert state.last_ok_at == T0 + 300 and state.next_poll_at == T0 + 600


@pytest.mark.data
def test_captured_feed_dates_are_utc_and_per_ticker_feed_tags_its_ticker(server, client, clock):
    server.add("/sa.rss", _captured("seekingalpha_AAPL_2026-03-08.rss"))
    server.add("/cnbc.rss", _captured(CNBC))
    sa = _feed(server.url("/sa.rss"), name="sa", tickers=["AAPL"])
    cnbc = _feed(server.url("/cnbc.rss"), name="cnbc")
    results = _poller([sa, cnbc], client, clock).poll_due({})
    assert all("AAPL" in a.tickers for a in results["sa"].articles)
    first = results["cnbc"].articles[0]
    # <pubDate>Sun, 08 Mar 2026 23:58:37 GMT</pubDate>, hand-read from the file
    assert first.published == datetime(2026, 3, 8, 23, 58, 37, tzinfo=UTC)
    assert first.id == "108275158"
    assert first.title == "Oil surges above $100 a barrel; Trump says 'small price to pay' for defeating Iran"


# --------------------------------------------------------------------------------------------------------------------
# Failures and backoff
# --------------------------------------------------------------------------------------------------------------------


def test_timeout_is_an_error_and_backs_off_then_caps(server, client, clock):
    server.add("/slow.rss", _rss([{"title": "x"}]), delay=3.0)
    feed = _feed(server.url("/slow.rss"), poll_seconds=1000, timeout_seconds=0.5)
    poller = _poller([feed], client, clock)
    state = FeedState()
    first = poller.poll(feed, state)
    assert (first.status, first.http_status, first.articles) == ("error", None, [])
    assert "timed out after 0.5 s" in first.error
    assert (state.failures, state.next_poll_at) == (1, T0 + 2000)
    second = poller.poll(feed, state)
    assert second.status == "error"
    assert (state.failures, state.next_poll_at) == (2, T0 + 3600)  # 4000 s capped at one hour


def test_server_errors_back_off_doubling_until_capped_and_success_resets(server, client, clock):
    route = server.add("/down.rss", _rss([{"title": "back", "link": "https://example.com/1"}]), status=500)
    feed = _feed(server.url("/down.rss"), poll_seconds=300)
    poller = _poller([feed], client, clock)
    state = FeedState()
    delays = []
    for _ in range(5):
        result = poller.poll(feed, state)
        assert (result.status, result.http_status) == ("error", 500)
        assert result.error.startswith("HTTP 500")
        delays.append(state.next_poll_at - clock.now)
    assert delays == [600, 1200, 2400, 3600, 3600]
    assert health_table({"feed": state})[0]["health"] == "failing"
    route.status = 200
    result = poller.poll(feed, state)
    assert (result.status, len(result.articles)) == ("ok", 1)
    assert (state.failures, state.next_poll_at - clock.now, state.last_error) == (0, 300, None)
    assert backoff_delay(7200, 3) == 7200  # the cap is never below the feed's own interval


def test_closed_port_is_an_error_not_an_exception(client, clock):
    feed = _feed("http://127.0.0.1:1/feed.rss", poll_seconds=60)
    state = FeedState()
    result = _poller([feed], client, clock).poll(feed, state)
    assert (result.status, result.http_status, result.articles) == ("error", None, [])
    assert "ConnectError" in result.error
    assert (state.failures, state.next_poll_at, state.last_status) == (1, T0 + 120, "error")


@pytest.mark.data
def test_malformed_feed_is_reported_as_bozo_not_raised(server, client, clock, tmp_path):
    body = _captured(CNBC)
    first_item = body.index(b"<item>")
    (tmp_path / "head.rss").write_bytes(body[: first_item - 50])  # cut inside the channel header
    (tmp_path / "half.rss").write_bytes(body[: len(body) // 2])  # cut in the middle of the items
    server.add("/head.rss", (tmp_path / "head.rss").read_bytes())
    server.add("/half.rss", (tmp_path / "half.rss").read_bytes())
    head = _feed(server.url("/head.rss"), name="head")
    half = _feed(server.url("/half.rss"), name="half")
    poller = _poller([head, half], client, clock)
    states: dict[str, FeedState] = {}
    results = poller.poll_due(states)

    assert (results["head"].status, results["head"].articles, results["head"].http_status) == ("bozo", [], 200)
    assert "SAXParseException" in results["head"].error
    assert states["head"].failures == 1 and states["head"].etag is None  # fetched in full next time

    assert results["half"].status == "bozo" and results["half"].error
    assert 0 < len(results["half"].articles) < 30
    assert states["half"].failures == 0 and states["half"].last_status == "bozo"
    rows = {row["feed"]: row for row in health_table(states)}
    assert rows["head"]["health"] == rows["half"]["health"] == "warning"


# --------------------------------------------------------------------------------------------------------------------
# De-duplication
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.data
def test_changing_feed_yields_only_new_entries_after_dedup(server, client, clock):
    full = _captured(CNBC)
    items = list(ITEM.finditer(full))
    cut = items[len(items) // 2].start()
    half = full[:cut] + full[items[-1].end():]  # the first half of the items, header and footer intact
    route = server.add("/live.rss", half, full)
    feed = _feed(server.url("/live.rss"))
    poller = _poller([feed], client, clock)
    deduper = Deduper()
    state = FeedState()
    first = deduper.filter(poller.poll(feed, state).articles)
    assert len(first) == len(items) // 2
    clock.now += 300
    second = poller.poll(feed, state)
    assert second.status == "ok" and len(second.articles) == len(items)
    new = deduper.filter(second.articles)
    assert [a.id for a in new] == [a.id for a in second.articles[len(items) // 2:]]
    assert route.hits == 2


@pytest.mark.data
def test_dedup_across_feeds_and_across_a_restart(server, client, clock):
    cnbc_body = _captured(CNBC)
    server.add("/cnbc.rss", cnbc_body)
    cnbc_first = ITEM.search(cnbc_body).group()
    story_url = re.search(rb"<link>(.*?)</link>", cnbc_first).group(1).decode()
    syndicated = [
        # The same story under another guid and headline: a duplicate by URL (tracking parameters ignored).
        {"guid": "wire-1", "title": "Crude tops $100", "link": story_url + "?utm_source=wire#top"},
        {"guid": "wire-2", "title": "A story of its own", "link": "https://wire.example.com/2"},
    ]
    server.add("/wire.rss", _rss(syndicated))
    cnbc = _feed(server.url("/cnbc.rss"), name="cnbc")
    wire = _feed(server.url("/wire.rss"), name="wire")
    poller = _poller([cnbc, wire], client, clock)
    results = poller.poll_due({})
    batch = results["cnbc"].articles + results["wire"].articles
    deduper = Deduper()
    stored = deduper.filter(batch)
    assert len(stored) == len(results["cnbc"].articles) + 1
    assert [a.id for a in stored if a.source == "wire"] == ["wire-2"]
    assert deduper.filter(batch) == []  # the same batch again

    # Restart: a new Deduper from the stored keys only.
    restarted = Deduper(ids=[a.id for a in stored], urls=[a.url for a in stored],
                        content_hashes=[a.content_hash for a in stored])
    again = poller.poll_due({})  # fresh states: full fetches
    assert restarted.filter(again["cnbc"].articles + again["wire"].articles) == []


def test_dedup_by_content_hash_within_a_batch_but_not_for_short_templates():
    def article(id_: str, title: str, summary: str, source: str) -> Article:
        return Article(id=id_, url=f"https://x.example/{id_}", title=title, summary=summary, published=None,
                       seen_at=datetime.fromtimestamp(T0, tz=UTC), source=source,
                       content_hash=content_hash(title, summary))

    text = "Shares of the chipmaker rose after it raised its full-year revenue forecast on strong demand."
    long_a = article("a", "Chipmaker lifts outlook", text, "one")
    long_b = article("b", "CHIPMAKER  lifts outlook", text.upper(), "two")  # same text, other case and spacing
    filing_1 = article("f1", "Provident Financial Holdings Inc (0001010470) (Filer)", "8-K", "sec")
    filing_2 = article("f2", "Provident Financial Holdings Inc (0001010470) (Filer)", "8-K", "sec")
    assert long_a.content_hash == long_b.content_hash
    kept = Deduper().filter([long_a, long_b, filing_1, filing_2])
    assert [a.id for a in kept] == ["a", "f1", "f2"]


# --------------------------------------------------------------------------------------------------------------------
# Text: tickers, HTML, dates, redaction
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$AAPL jumps after earnings", ["AAPL"]),
        ("Apple unveils a cheaper phone", ["AAPL"]),
        ("The iPhone maker and Microsoft agree a deal", ["AAPL", "MSFT"]),
        ("Grandma's apple pie wins the county fair", ["AAPL"]),  # known limitation: no sense of meaning
        ("Pineapple and applesauce prices", []),  # whole words only
        ("$A", []),  # one-letter cashtag of an unknown ticker
        ("Bought $XYZ and $BRK at $100, $A1.5bn deal", ["BRK", "XYZ"]),  # unknown 2-5 letter cashtags count
        ("Meta Platforms and metadata", ["META"]),
        ("", []),
    ],
)
def test_cashtags_and_entity_names_map_to_tickers(text, expected):
    assert TickerMatcher(ENTITIES).match(text) == expected


def test_one_letter_cashtag_counts_for_a_known_ticker_and_feed_defaults_apply():
    matcher = TickerMatcher(ENTITIES, known_tickers=["F"])
    assert matcher.match("$F recalls trucks; $A rallies") == ["F"]
    assert matcher.match("no names here", defaults=["TSLA"]) == ["TSLA"]


def test_clean_text_strips_html_and_unescapes_entities():
    assert clean_text("<p>Profit &amp; loss&nbsp;<b>up</b></p>\n\n  <br/>5%<script>x()</script>") == \
        "Profit & loss up 5%"
    assert clean_text("&lt;p&gt;Escaped &amp;amp; twice&lt;/p&gt;") == "Escaped & twice"
    assert clean_text("a < b and c > d") == "a < b and c > d"
    assert clean_text(None) == ""


def test_entry_without_date_has_published_none_and_pii_is_redacted(server, client, clock):
    items = [
        {"guid": "n1", "title": "No date here", "description": "<p>Write to jane.doe@example.com</p>"},
        {"title": "Dated", "link": "https://example.com/d", "pubDate": "Tue, 10 Jun 2025 14:30:00 +0200"},
        {"title": "Neither id nor link"},
    ]
    server.add("/nodate.rss", _rss(items))
    feed = _feed(server.url("/nodate.rss"))
    result = _poller([feed], client, clock).poll(feed, FeedState())
    undated, dated, bare = result.articles
    assert undated.published is None and undated.seen_at == datetime.fromtimestamp(T0, tz=UTC)
    assert undated.summary == "Write to [EMAIL]"
    assert dated.published == datetime(2025, 6, 10, 12, 30, tzinfo=UTC)
    assert dated.id == "https://example.com/d"
    assert bare.id == f"sha256:{bare.content_hash}"


@pytest.mark.data
def test_captured_feed_without_dates_gives_published_none(server, client, clock):
    body = re.sub(rb"<pubDate>.*?</pubDate>", b"", _captured(CNBC))
    server.add("/nodate.rss", body)
    feed = _feed(server.url("/nodate.rss"))
    articles = _poller([feed], client, clock).poll(feed, FeedState()).articles
    assert len(articles) == 30
    assert all(a.published is None for a in articles)


# --------------------------------------------------------------------------------------------------------------------
# Scheduling and health
# --------------------------------------------------------------------------------------------------------------------


def test_poll_due_polls_only_due_feeds_and_health_rows_follow(server, client, clock):
    server.add("/a.rss", _rss([{"guid": "1", "title": "one"}]))
    server.add("/b.rss", _rss([{"guid": "2", "title": "two"}]))
    a = _feed(server.url("/a.rss"), name="a")
    b = _feed(server.url("/b.rss"), name="b")
    c = _feed("http://127.0.0.1:1/c.rss", name="c")
    poller = _poller([a, b, c], client, clock)
    states = {"b": FeedState(next_poll_at=T0 + 10)}
    results = poller.poll_due(states)
    assert list(results) == ["a", "c"]
    assert set(states) == {"a", "b", "c"}
    rows = health_table(states)
    assert [(r["feed"], r["health"], r["failures"], r["entries_seen"]) for r in rows] == [
        ("a", "ok", 0, 1), ("b", "pending", 0, 0), ("c", "warning", 1, 0)]
    assert rows[0]["last_ok_at"] == datetime.fromtimestamp(T0, tz=UTC)
    assert rows[0]["next_poll_at"] == datetime.fromtimestamp(T0 + 300, tz=UTC)
    clock.now += 10
    assert list(poller.poll_due(states)) == ["b"]
