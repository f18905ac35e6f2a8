"""RSS / Atom polling for the finance-sentiment monitor: configured feeds in, clean de-duplicated articles out.

:func:`load_feeds_file` reads the feeds and the entity map (ticker -> names and aliases); :class:`FeedPoller` fetches
with conditional GETs, never raises for a network or feed problem (it reports it and backs off) and turns entries
into :class:`Article` objects (HTML stripped, whitespace collapsed, contact data redacted; ``published`` may be None,
``seen_at`` is always set); :class:`Deduper` drops repeats by id, URL and content hash, across feeds and restarts;
:func:`health_table` gives the dashboard's rows. :class:`FeedState` times are epoch seconds from the poller's clock.

Ticker tagging unions the feed's default tickers, entity names and aliases, and ``$TICKER`` cashtags. Names match
case-insensitively as whole words with no sense of meaning ("apple pie" tags AAPL), so choose aliases rarely used in
another sense. A one-letter cashtag (``$A``) counts only for a known ticker, as ``$A``, ``$C`` and the like are
mostly currency markers.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import re
import time
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import feedparser
import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.privacy import NEWS_KINDS, redact

logger = logging.getLogger(__name__)

# Longest wait between polls of a failing feed (unless the feed's own interval is longer).
MAX_BACKOFF_SECONDS = 3600.0
# Consecutive failures from which the dashboard shows a feed as failing rather than as a warning.
FAILING_AFTER = 3
# Content hashes of shorter texts are not used for de-duplication: short templated entries such as
# "Provident Financial Holdings Inc (0001010470) (Filer) 8-K" repeat for distinct filings in the SEC XBRL feed.
DEFAULT_MIN_HASH_CHARS = 80

_USER_AGENT = "trident-finance-feeds/0.1"
_TICKER_RE = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,9}")
# "$" then 1-5 capitals, not glued to a word or another "$" on the left, nor to a letter or digit on the right
# (so "$100", "$A1.5bn" and "US$AAPL" are not cashtags).
_CASHTAG_RE = re.compile(r"(?<![\w$])\$([A-Z]{1,5})(?![A-Za-z0-9_])")
_TAG_RE = re.compile(r"</?[A-Za-z][^<>]*>")
# Elements whose text is not article text.
_SKIP_ELEMENTS = frozenset({"script", "style", "head", "title", "noscript", "template"})
# Elements that separate words, so "a<br>b" becomes "a b" rather than "ab".
_BREAK_ELEMENTS = frozenset({
    "address", "article", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure", "footer", "h1", "h2",
    "h3", "h4", "h5", "h6", "header", "hr", "img", "li", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
})

PollStatus = Literal["ok", "not_modified", "error", "bozo"]


class FeedConfigError(ValueError):
    """A feeds file that cannot be used; the message is one line and names the file."""


# ---------------------------------------------------------------------------------------------------- configuration


def _normalise_ticker(value: object) -> str:
    """Return ``value`` as an upper-case ticker symbol, or raise ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"ticker must be a string, got {type(value).__name__}")
    ticker = value.strip().upper()
    if not _TICKER_RE.fullmatch(ticker):
        raise ValueError(f"invalid ticker {value!r} (1-10 letters, digits, '.' or '-')")
    return ticker


def nonblank(value: str) -> str:
    """A name stripped of spaces; a blank one is an error (shared by the feed and alert-rule configs)."""
    value = value.strip()
    if not value:
        raise ValueError("name must not be blank")
    return value


def ticker_list(value: object) -> list[str]:
    """One ticker or a list of them -> upper-case, validated, de-duplicated symbols (feed and alert-rule configs)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ValueError("tickers must be a list of ticker symbols")
    return list(dict.fromkeys(_normalise_ticker(item) for item in value))


class FeedConfig(BaseModel):
    """One feed to poll."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="http(s) URL of the RSS or Atom document.")
    name: str = Field(min_length=1, description="Unique name; becomes Article.source and the key of its state.")
    tickers: list[str] = Field(default_factory=list,
                               description="Tickers every article of this feed is about (e.g. a per-ticker feed).")
    poll_seconds: float = Field(300.0, gt=0, description="Interval between polls while the feed is healthy.")
    timeout_seconds: float = Field(10.0, gt=0, description="Connect / read timeout of one request.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must be an absolute http(s) URL, got {value!r}")
        return value

    _check_name = field_validator("name")(nonblank)
    _check_tickers = field_validator("tickers", mode="before")(ticker_list)


class EntityConfig(BaseModel):
    """A ticker and the company names and aliases that tag an article with it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticker: str = Field(description="Ticker symbol, upper case.")
    names: list[str] = Field(min_length=1, description="Company names and aliases, matched as whole words.")

    _check_ticker = field_validator("ticker", mode="before")(_normalise_ticker)

    @field_validator("names", mode="before")
    @classmethod
    def _check_names(cls, value: object) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ValueError("names must be a list of strings")
        names = [" ".join(item.split()) for item in value]
        if not all(names):
            raise ValueError("names must not be blank")
        return list(dict.fromkeys(names))


def one_line(text: object) -> str:
    """Collapse whitespace (newlines included) so that a message fits on one line."""
    return " ".join(str(text).split())


def validation_message(exc: ValidationError, skip: int = 0) -> str:
    """The first error of a pydantic ValidationError as one line ``field: message``, without the first ``skip`` parts
    of the field's location."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"][skip:])
    message = str(error["msg"]).removeprefix("Value error, ")
    return one_line(f"{where}: {message}" if where else message)


def read_document(path: Path, what: str, error: type[Exception]) -> object:
    """Parse a configuration file: YAML for ``.yaml`` / ``.yml``, TOML otherwise.

    ``what`` names the file in messages (e.g. ``"feeds file"``). Raises ``error`` with a one-line message when the
    file is missing or unreadable, or not valid TOML / YAML (the message gives the line).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(one_line(f"{path}: cannot read {what}: {exc}")) from None
    if path.suffix.lower() not in (".yaml", ".yml"):
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # The message ends with "(at line L, column C)".
            raise error(one_line(f"{path}: invalid TOML: {exc}")) from None
    try:
        import yaml  # optional dependency, imported only when a YAML file is read
    except ImportError:
        raise error(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use a .toml file") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise error(one_line(f"{path}: invalid YAML{where}: {problem}")) from None


def load_feeds_file(path: str | Path) -> tuple[list[FeedConfig], dict[str, list[str]]]:
    """Read the feed list and the entity map from a ``.toml``, ``.yaml`` or ``.yml`` file (YAML needs PyYAML).

    The layout (TOML shown; YAML uses the same keys, ``feeds`` as a list of mappings)::

        [[feeds]]
        name = "cnbc"
        url = "https://www.cnbc.com/id/100727362/device/rss/rss.html"
        tickers = []          # optional; also poll_seconds, timeout_seconds

        [entities]
        AAPL = ["Apple", "Apple Inc", "iPhone maker"]

    Returns:
        The feeds in file order, and the entity map (upper-case ticker -> names and aliases).

    Raises:
        FeedConfigError: One line: the file is missing, unreadable or invalid (with the line), a feed lacks a url or
            a name or has an invalid field, two feeds share a name, or the layout is wrong.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise FeedConfigError(f"{path}: unsupported feeds file type {suffix or '(none)'!r}; use .toml, .yaml or .yml")
    document = read_document(path, "feeds file", FeedConfigError)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise FeedConfigError(f"{path}: expected a table with 'feeds' and 'entities', got {type(document).__name__}")
    unknown = sorted(set(document) - {"feeds", "entities"})
    if unknown:
        raise FeedConfigError(f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                              "expected 'feeds' and 'entities'")
    raw_feeds = document.get("feeds")
    if not raw_feeds:
        raise FeedConfigError(f"{path}: no feeds; add at least one [[feeds]] table with a name and a url")
    if not isinstance(raw_feeds, list):
        raise FeedConfigError(f"{path}: 'feeds' must be a list of tables ([[feeds]])")
    feeds: list[FeedConfig] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(raw_feeds, start=1):
        if not isinstance(raw, dict):
            raise FeedConfigError(f"{path}: feed #{index} must be a table, got {type(raw).__name__}")
        label = f"feed #{index}" + (f" ({raw['name']!r})" if isinstance(raw.get("name"), str) else "")
        for required in ("url", "name"):
            if raw.get(required) in (None, ""):
                raise FeedConfigError(f"{path}: {label} has no {required}")
        try:
            feed = FeedConfig.model_validate(raw)
        except ValidationError as exc:
            raise FeedConfigError(f"{path}: {label}: {validation_message(exc)}") from None
        if feed.name in first_index:
            raise FeedConfigError(f"{path}: duplicate feed name {feed.name!r} (feeds #{first_index[feed.name]} "
                                  f"and #{index})")
        first_index[feed.name] = index
        feeds.append(feed)
    raw_entities = document.get("entities") or {}
    if not isinstance(raw_entities, dict):
        raise FeedConfigError(f"{path}: 'entities' must be a table of TICKER = [names]")
    entities: dict[str, list[str]] = {}
    for ticker, names in raw_entities.items():
        try:
            entity = EntityConfig(ticker=ticker, names=names)
        except ValidationError as exc:
            raise FeedConfigError(f"{path}: entities.{ticker}: {validation_message(exc)}") from None
        if entity.ticker in entities:
            raise FeedConfigError(f"{path}: ticker {entity.ticker!r} is listed twice in entities")
        entities[entity.ticker] = entity.names
    return feeds, entities


# ------------------------------------------------------------------------------------ text cleaning, hashing, tickers


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment, with character references converted."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_ELEMENTS:
            self._skip_depth += 1
        elif tag in _BREAK_ELEMENTS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_ELEMENTS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BREAK_ELEMENTS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def _strip_html_once(text: str) -> str:
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def clean_text(text: str | None) -> str:
    """Strip HTML tags, unescape entities and collapse whitespace into one line of plain text (None reads as empty).

    A second pass handles HTML that was escaped twice (``&lt;p&gt;``); text such as ``a < b`` is kept.
    """
    if not text:
        return ""
    result = _strip_html_once(text)
    if _TAG_RE.search(result):
        result = _strip_html_once(result)
    return " ".join(result.split())


def _normalise_for_hash(text: str) -> str:
    return " ".join(text.casefold().split())


def content_hash(title: str, summary: str) -> str:
    """SHA-256 (64 hex digits) of the case-folded, whitespace-collapsed title and summary."""
    text = f"{_normalise_for_hash(title)}\n{_normalise_for_hash(summary)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TickerMatcher:
    """Tags text with tickers from entity names and aliases, and from cashtags. See the module notes on limits."""

    def __init__(self, entities: Mapping[str, Sequence[str]], known_tickers: Iterable[str] = ()) -> None:
        """``entities``: ticker -> names and aliases; ``known_tickers``: further tickers (e.g. the feeds') that
        one-letter cashtags may name."""
        self._by_name: dict[str, set[str]] = {}
        for ticker, names in entities.items():
            for name in names:
                key = _normalise_for_hash(name)
                if key:
                    self._by_name.setdefault(key, set()).add(ticker.upper())
        self.known: frozenset[str] = frozenset(t.upper() for t in (*entities, *known_tickers))
        # Longest names first, so "Meta Platforms" wins over "Meta" at the same position; inner whitespace is flexible.
        alternatives = [r"\s+".join(re.escape(word) for word in key.split())
                        for key in sorted(self._by_name, key=len, reverse=True)]
        self._name_re = (re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)
                         if alternatives else None)

    def cashtags(self, text: str) -> set[str]:
        """Tickers named by cashtags of 2-5 capitals, and one-letter cashtags of known tickers."""
        return {tag for tag in _CASHTAG_RE.findall(text) if len(tag) > 1 or tag in self.known}

    def names(self, text: str) -> set[str]:
        """Tickers whose names or aliases occur in ``text`` as whole words (any case)."""
        if self._name_re is None:
            return set()
        found: set[str] = set()
        for match in self._name_re.finditer(text):
            found |= self._by_name.get(_normalise_for_hash(match.group()), set())
        return found

    def match(self, text: str, defaults: Iterable[str] = ()) -> list[str]:
        """The sorted, unique tickers of ``text``: ``defaults`` (the feed's own), name matches and cashtags."""
        return sorted(set(defaults) | self.names(text) | self.cashtags(text))


# -------------------------------------------------------------------------------------------- articles, state, results


class Article(BaseModel):
    """One feed entry, cleaned and redacted."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable id: the entry's id/guid, else its link, else 'sha256:<content_hash>'.")
    url: str = Field(description="The entry's link, or '' when it has none.")
    title: str = Field(description="Plain text, HTML stripped, whitespace collapsed, PII redacted.")
    summary: str = Field(description="Plain text, HTML stripped, whitespace collapsed, PII redacted.")
    published: datetime | None = Field(
        description="Publication (else update) time in UTC; None when the entry has no date (use seen_at then).")
    seen_at: datetime = Field(description="UTC time of the fetch that first returned this entry.")
    source: str = Field(description="Name of the feed it came from.")
    content_hash: str = Field(description="SHA-256 of the normalised title and summary, see content_hash().")
    tickers: list[str] = Field(default_factory=list, description="Sorted tickers the article is tagged with.")

    @field_validator("published", "seen_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("datetime must be timezone-aware")
        return value.astimezone(UTC)


class FeedState(BaseModel):
    """What the poller remembers about one feed between polls (times are epoch seconds from its clock)."""

    etag: str | None = Field(None, description="ETag of the last full response, sent back as If-None-Match.")
    last_modified: str | None = Field(None, description="Last-Modified of the last full response.")
    failures: int = Field(0, ge=0, description="Consecutive failed polls; 0 after a success.")
    next_poll_at: float = Field(0.0, description="The feed is due when the clock reaches this.")
    last_status: PollStatus | None = Field(None, description="Status of the last poll; None before the first.")
    last_error: str | None = Field(None, description="Error of the last poll, if it had one.")
    last_ok_at: float | None = Field(None, description="Time of the last poll that got a feed or a 304.")
    entries_seen: int = Field(0, ge=0, description="Entries parsed from this feed in total (before de-duplication).")


class PollResult(BaseModel):
    """The outcome of polling one feed once."""

    feed: str = Field(description="The feed's name.")
    articles: list[Article] = Field(default_factory=list, description="Articles parsed, not yet de-duplicated.")
    status: PollStatus = Field(description="ok | not_modified (304) | error (network / HTTP) | bozo (malformed feed).")
    error: str | None = Field(None, description="One-line reason for error and bozo; None otherwise.")
    http_status: int | None = Field(None, description="HTTP status code; None when no response arrived.")


def backoff_delay(poll_seconds: float, failures: int, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """Seconds to wait before the next poll: ``min(poll_seconds * 2**failures, cap)``, no jitter.

    The cap is never below ``poll_seconds``, so a failing feed is not polled more often than a healthy one.
    """
    if failures <= 0:
        return poll_seconds
    return min(poll_seconds * 2.0 ** min(failures, 64), max(cap, poll_seconds))


def _entry_datetime(entry: Mapping[str, Any]) -> datetime | None:
    """The entry's published (else updated) time as an aware UTC datetime; feedparser gives UTC struct_times."""
    for key in ("published_parsed", "updated_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
            except (OverflowError, ValueError, TypeError, OSError):
                continue
    return None


def entry_text(entry: Mapping[str, Any]) -> tuple[str, str]:
    """An entry's title and summary (else its first content) as the app stores them: clean and redacted."""
    content = entry.get("content") or []
    summary = entry.get("summary") or (content[0].get("value", "") if content else "")
    return redact(clean_text(entry.get("title")), NEWS_KINDS), redact(clean_text(str(summary)), NEWS_KINDS)


# ------------------------------------------------------------------------------------------------------------ polling


class FeedPoller:
    """Polls feeds with conditional GETs and turns their entries into :class:`Article` lists.

    A poller owns the HTTP client it creates (close it with :meth:`close` or a ``with`` block); a client passed in
    stays the caller's. States live with the caller (e.g. in the store) and are updated in place.
    """

    def __init__(self, feeds: Sequence[FeedConfig], entities: Mapping[str, Sequence[str]],
                 client: httpx.Client | None = None, clock: Callable[[], float] = time.time) -> None:
        """Set up the poller over ``feeds`` (unique names, else ValueError) and the entity map (for tagging).

        The default ``client`` follows the environment's proxy settings; ``clock`` returns epoch seconds.
        """
        names = [feed.name for feed in feeds]
        if len(set(names)) != len(names):
            raise ValueError(f"feed names must be unique, got {names}")
        self.feeds: list[FeedConfig] = list(feeds)
        self.matcher = TickerMatcher(entities, known_tickers=(t for feed in feeds for t in feed.tickers))
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(headers={"User-Agent": _USER_AGENT})
        self._clock = clock

    def close(self) -> None:
        """Close the HTTP client if this poller created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> FeedPoller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def poll_due(self, states: dict[str, FeedState], only: Collection[str] | None = None) -> dict[str, PollResult]:
        """Poll every feed (of the names in ``only``, when given) whose ``next_poll_at`` has come; a feed without a
        state gets one (added to ``states``).

        Returns:
            Feed name -> result, for the feeds polled, in config order.
        """
        now = self._clock()
        results: dict[str, PollResult] = {}
        for feed in self.feeds:
            if only is not None and feed.name not in only:
                continue
            state = states.setdefault(feed.name, FeedState())
            if state.next_poll_at <= now:
                results[feed.name] = self.poll(feed, state)
        return results

    def poll(self, feed: FeedConfig, state: FeedState) -> PollResult:
        """Fetch and parse one feed, updating ``state`` in place. Never raises for network, HTTP or feed problems.

        * 304 Not Modified: no articles, status ``not_modified``.
        * Timeout, connection error, HTTP error status: status ``error``; ``failures`` grows and the next poll is
          :func:`backoff_delay` away.
        * Malformed feed (feedparser's ``bozo``) with no entries: status ``bozo``, counted as a failure; the validators
          are not kept, so the next poll fetches the document again. With entries: its articles, status ``bozo``.
        * Otherwise ``ok``; ``failures`` resets and the next poll is ``poll_seconds`` away.
        """
        now = self._clock()
        headers: dict[str, str] = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        try:
            response = self._client.get(feed.url, headers=headers, timeout=feed.timeout_seconds, follow_redirects=True)
        except httpx.TimeoutException as exc:
            return self._failed(feed, state, now, f"timed out after {feed.timeout_seconds:g} s ({type(exc).__name__})")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return self._failed(feed, state, now, f"{type(exc).__name__}: {exc}")

        if response.status_code == 304:
            self._succeeded(feed, state, now, "not_modified", None)
            return PollResult(feed=feed.name, status="not_modified", http_status=304)
        if not response.is_success:
            reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            return self._failed(feed, state, now, reason, response.status_code)

        articles, bozo_error, n_entries = self._parse(response.content, feed, now)
        state.entries_seen += n_entries
        if bozo_error is not None and not articles:
            return self._failed(feed, state, now, bozo_error, response.status_code, status="bozo")
        state.etag = response.headers.get("ETag")
        state.last_modified = response.headers.get("Last-Modified")
        status: PollStatus = "ok" if bozo_error is None else "bozo"
        self._succeeded(feed, state, now, status, bozo_error)
        return PollResult(feed=feed.name, articles=articles, status=status, error=bozo_error,
                          http_status=response.status_code)

    def parse(self, content: bytes, feed: FeedConfig, seen_at: float | None = None) -> list[Article]:
        """Parse RSS / Atom bytes of ``feed`` into articles without HTTP (malformed entries are skipped);
        ``seen_at`` is the fetch time in epoch seconds, default now."""
        return self._parse(content, feed, self._clock() if seen_at is None else seen_at)[0]

    def _parse(self, content: bytes, feed: FeedConfig, now: float) -> tuple[list[Article], str | None, int]:
        """Return the articles, the bozo error (None for a well-formed feed) and the number of entries."""
        try:
            parsed = feedparser.parse(content)
        except Exception as exc:  # feedparser is not meant to raise; a worker must survive it if it does
            return [], one_line(f"{type(exc).__name__}: {exc}"), 0
        bozo_error = None
        if parsed.get("bozo"):
            exc = parsed.get("bozo_exception")
            bozo_error = one_line(f"{type(exc).__name__}: {exc}" if exc is not None else "malformed feed")
        seen_at = datetime.fromtimestamp(now, tz=UTC)
        articles: list[Article] = []
        for index, entry in enumerate(parsed.entries):
            try:
                article = self._article(entry, feed, seen_at)
            except (ValidationError, ValueError, TypeError, AttributeError) as exc:
                logger.warning("feed %s: skipping entry %d: %s", feed.name, index, one_line(exc))
                continue
            if article is not None:
                articles.append(article)
        return articles, bozo_error, len(parsed.entries)

    def _article(self, entry: Mapping[str, Any], feed: FeedConfig, seen_at: datetime) -> Article | None:
        """Build one Article; None for an entry with no title, summary or link."""
        title, summary = entry_text(entry)
        url = str(entry.get("link") or "").strip()
        if not (title or summary or url):
            return None
        digest = content_hash(title, summary)
        entry_id = str(entry.get("id") or "").strip() or url or f"sha256:{digest}"
        return Article(id=entry_id, url=url, title=title, summary=summary, published=_entry_datetime(entry),
                       seen_at=seen_at, source=feed.name, content_hash=digest,
                       tickers=self.matcher.match(f"{title}\n{summary}", defaults=feed.tickers))

    @staticmethod
    def _succeeded(feed: FeedConfig, state: FeedState, now: float, status: PollStatus, error: str | None) -> None:
        state.failures = 0
        state.next_poll_at = now + feed.poll_seconds
        state.last_status = status
        state.last_error = error
        state.last_ok_at = now
        if error:
            logger.warning("feed %s: %s, parsed anyway: %s", feed.name, status, error)

    @staticmethod
    def _failed(feed: FeedConfig, state: FeedState, now: float, error: str, http_status: int | None = None,
                status: PollStatus = "error") -> PollResult:
        error = one_line(error)
        state.failures += 1
        delay = backoff_delay(feed.poll_seconds, state.failures)
        state.next_poll_at = now + delay
        state.last_status = status
        state.last_error = error
        logger.warning("feed %s: %s (failure %d, next poll in %.0f s): %s", feed.name, status, state.failures, delay,
                       error)
        return PollResult(feed=feed.name, status=status, error=error, http_status=http_status)


# ----------------------------------------------------------------------------------------------------- de-duplication


def normalise_url(url: str) -> str:
    """A URL with its scheme and host lower-cased, and no fragment nor ``utm_*`` parameters (a non-absolute one is
    returned stripped)."""
    url = url.strip()
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not k.lower().startswith("utm_")])
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, query, ""))


class Deduper:
    """Remembers article ids, URLs and content hashes, and drops articles that repeat any of them.

    Content hashes of texts shorter than ``min_hash_chars`` (normalised title plus summary) are not compared, because
    short templated entries repeat for distinct items; ids and URLs still are. Ids are compared as given, across
    feeds: a guid is assumed to be unique to its story. Built from the keys already stored, it holds across restarts.
    """

    def __init__(self, ids: Iterable[str] = (), urls: Iterable[str] = (), content_hashes: Iterable[str] = (), *,
                 min_hash_chars: int = DEFAULT_MIN_HASH_CHARS) -> None:
        self.ids: set[str] = set(ids)
        self.urls: set[str] = {normalise_url(url) for url in urls if url}
        self.content_hashes: set[str] = set(content_hashes)
        self.min_hash_chars = min_hash_chars

    def is_duplicate(self, article: Article) -> bool:
        """Whether ``article`` repeats a remembered id, URL or (long enough) content hash."""
        if article.id in self.ids or (article.url and normalise_url(article.url) in self.urls):
            return True
        length = len(_normalise_for_hash(article.title)) + len(_normalise_for_hash(article.summary))
        return length >= self.min_hash_chars and article.content_hash in self.content_hashes

    def add(self, article: Article) -> None:
        """Remember the keys of ``article``."""
        self.ids.add(article.id)
        if article.url:
            self.urls.add(normalise_url(article.url))
        self.content_hashes.add(article.content_hash)

    def filter(self, articles: Iterable[Article]) -> list[Article]:
        """The first occurrence of each story among ``articles``, in order; all of them are remembered (duplicates
        within the batch included)."""
        kept: list[Article] = []
        for article in articles:
            duplicate = self.is_duplicate(article)
            self.add(article)  # a duplicate's other keys are remembered too
            if not duplicate:
                kept.append(article)
        return kept


# ------------------------------------------------------------------------------------------------------------- health


class FeedHealth(BaseModel):
    """One dashboard row about one feed."""

    model_config = ConfigDict(frozen=True)

    feed: str = Field(description="Feed name.")
    health: Literal["pending", "ok", "warning", "failing"] = Field(
        description=f"pending: never polled; warning: malformed or under {FAILING_AFTER} failures in a row; "
                    f"failing: {FAILING_AFTER} or more.")
    last_status: PollStatus | None = Field(description="Status of the last poll.")
    failures: int = Field(description="Consecutive failures.")
    last_error: str | None = Field(description="Error of the last poll.")
    last_ok_at: datetime | None = Field(description="Last successful poll (UTC).")
    next_poll_at: datetime | None = Field(description="When the feed is next due (UTC); None before the first poll.")
    entries_seen: int = Field(description="Entries parsed in total.")


def _health(state: FeedState) -> Literal["pending", "ok", "warning", "failing"]:
    if state.last_status is None:
        return "pending"
    if state.failures >= FAILING_AFTER:
        return "failing"
    if state.failures or state.last_status == "bozo":
        return "warning"
    return "ok"


def _as_datetime(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def health_table(states: Mapping[str, FeedState]) -> list[dict[str, Any]]:
    """The dashboard's feed-health rows (:class:`FeedHealth` as dicts, times as UTC datetimes), sorted by name."""
    return [FeedHealth(feed=name, health=_health(state), last_status=state.last_status, failures=state.failures,
                       last_error=state.last_error, last_ok_at=_as_datetime(state.last_ok_at),
                       next_poll_at=_as_datetime(state.next_poll_at) if state.last_status is not None else None,
                       entries_seen=state.entries_seen).model_dump()
            for name, state in sorted(states.items())]
