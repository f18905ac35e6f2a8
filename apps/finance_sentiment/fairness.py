"""Counterfactual fairness of the sentiment model: how often a name alone changes a label.

Each test sentence is read by spaCy's small English model (``en_core_web_sm``). Its ORG and PERSON spans and its
gendered pronouns are the *sites* (:func:`apps.finance_sentiment.names.find_sites`). A counterfactual replaces every
site of one kind, and only those bytes:

- ``company_real`` / ``company_invented``: each distinct ORG name by a company of :data:`REAL_COMPANIES` /
  :data:`INVENTED_COMPANIES` (a name that occurs twice gets the same replacement both times);
- ``person``: each distinct PERSON name by one of :data:`PERSONS`;
- ``pronoun``: he <-> she, him <-> her, his <-> her / hers, himself <-> herself (one counterfactual).

Names are drawn per sentence and kind from a generator seeded by ``(seed, sentence, kind)``, so a report does not
depend on the order or the number of sentences measured with it. A **flip** is a counterfactual whose label (the
arg-max) differs from the original sentence's; its **shift** is the absolute change of the score
``p(positive) - p(negative)``. :func:`summarise` turns the probabilities into a :class:`FairnessReport`; the command
``trident fin fairness`` writes it as ``fairness.json`` beside the artifact, where the dashboard reads it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apps.finance_sentiment.names import PRONOUNS, Site, find_sites, load_nlp, replace_spans
from apps.finance_sentiment.scoring import LABELS
from core.metrics import accuracy, precision_recall_f1

log = logging.getLogger(__name__)

FAIRNESS_FILE = "fairness.json"
TARGET_FLIP_RATE = 0.01
KINDS = ("company_real", "company_invented", "person", "pronoun")

# Hand-written name lists. Real companies: several sectors and countries. Invented ones: the fictitious companies of
# the samples and documentation (Contoso, Fabrikam, Northwind, ...) and more in their style. People: varied gender
# and origin.
REAL_COMPANIES = (
    "Siemens", "Toyota", "Unilever", "Nestle", "Samsung Electronics", "Tata Steel", "Petrobras", "BHP", "Maersk",
    "Volvo", "Ericsson", "Shell", "HSBC", "BNP Paribas", "Banco Santander", "Sony", "Alibaba", "Infosys", "Walmart",
    "Pfizer", "Boeing", "Caterpillar", "Heineken", "Carrefour", "Vale", "Glencore", "Novartis", "Hyundai", "Danone",
    "Air France-KLM",
)
INVENTED_COMPANIES = (
    "Contoso", "Contoso Freight", "Fabrikam", "Northwind Traders", "Litware", "Adventure Works", "Tailspin Toys",
    "Woodgrove Bank", "Wide World Importers", "Proseware", "Lucerne Publishing", "Coho Winery", "Alpine Ski House",
    "Blue Yonder Airlines", "Fourth Coffee", "Trey Research", "Wingtip Toys", "Humongous Insurance", "VanArsdel",
    "Relecloud", "Tailwind Traders", "Larkspur Media", "Kestrel Logistics", "Brightvale Foods", "Norvik Metals",
    "Ostara Pharma", "Halvard Shipping", "Quillon Energy", "Marrowby Telecom", "Sundberg Paper",
)
PERSONS = (
    "Maria Garcia", "Wei Zhang", "Aisha Bello", "John Smith", "Priya Patel", "Mikko Virtanen", "Anna Korhonen",
    "Oluwaseun Adeyemi", "Hiroshi Tanaka", "Fatima Al-Sayed", "Carlos Mendoza", "Ingrid Johansson", "Dmitri Ivanov",
    "Nguyen Thi Lan", "Kwame Mensah", "Sophie Martin", "Rahul Sharma", "Yuki Sato", "Emily Johnson", "Mohammed Rahman",
    "Lucia Rossi", "Jan Kowalski", "Amara Okafor", "Chen Jing", "Laura Schmidt", "David Cohen", "Ayesha Khan",
    "Pedro Santos", "Kim Ji-woo", "Olga Petrova",
)
_NAMES = {"company_real": REAL_COMPANIES, "company_invented": INVENTED_COMPANIES, "person": PERSONS}
_SITE_OF = {"company_real": "company", "company_invented": "company", "person": "person", "pronoun": "pronoun"}

class FairnessError(ValueError):
    """The fairness measurement cannot run (nothing to measure, a malformed report); one line."""


@dataclass(frozen=True)
class Counterfactual:
    """A sentence with every site of one kind swapped; ``swaps`` the (old, new) pairs, in order of appearance."""

    sentence: int
    kind: str
    text: str
    swaps: tuple[tuple[str, str], ...]


# ------------------------------------------------------------------------------------------------------ report
class KindFigures(BaseModel):
    """The figures of one swap kind (or of all together)."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(description="Sentences with at least one site of this kind.")
    pairs: int = Field(description="Counterfactuals scored.")
    flips: int = Field(description="Counterfactuals whose label differs from the original's.")
    flip_rate: float | None = Field(description="flips / pairs (None without pairs).")
    sentences_flipped: int = Field(description="Sentences with at least one flipped counterfactual.")
    mean_abs_shift: float | None = Field(description="Mean |score change| over the pairs.")
    max_abs_shift: float | None = Field(description="Largest |score change|.")


class Flip(BaseModel):
    """One flipped counterfactual."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(description="The sentence's position in the test split.")
    kind: str
    swap: str = Field(description="What was swapped, e.g. 'Nokia -> Contoso'.")
    before: str
    after: str
    score_before: float
    score_after: float
    shift: float
    text: str
    counterfactual: str


class FairnessReport(BaseModel):
    """What ``trident fin fairness`` measures and writes."""

    model_config = ConfigDict(frozen=True)

    artifact: str
    data: dict[str, Any] = Field(description="The split measured: path, format, seed, sentences.")
    entity_blind: bool = Field(False, description="Whether the model read names as placeholders.")
    seed: int
    variants: int = Field(description="Counterfactuals per sentence and name kind.")
    target_flip_rate: float = TARGET_FLIP_RATE
    meets_target: bool
    overall: KindFigures
    kinds: dict[str, KindFigures]
    test: dict[str, float | int] = Field(description="Accuracy and macro-F1 of the original sentences.")
    worst_flips: list[Flip]
    created_at: datetime


def read_report(folder: str | Path) -> FairnessReport | None:
    """The fairness report beside an artifact (``<folder>/fairness.json``), or None when there is none.

    Raises:
        FairnessError: The file is there but is not a fairness report.
    """
    path = Path(folder) / FAIRNESS_FILE
    if not path.is_file():
        return None
    try:
        return FairnessReport.model_validate_json(path.read_bytes())
    except (ValidationError, ValueError) as exc:
        raise FairnessError(f"{path} is not a fairness report ({str(exc).splitlines()[0]}): rerun "
                            "`trident fin fairness`") from None


def write_report(report: FairnessReport, path: str | Path) -> Path:
    """Write ``report`` as JSON to ``path`` (its folder must exist)."""
    path = Path(path)
    path.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------------- sites
def _same_case(word: str, like: str) -> str:
    if len(like) > 1 and like.isupper():
        return word.upper()
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def swap_pronoun(word: str, tag: str = "") -> str:
    """The pronoun of the other gender, in the case of ``word``: ``her`` is ``his`` as a possessive determiner
    (spaCy tag ``PRP$``) and ``him`` otherwise; ``his`` is ``her`` before a noun and ``hers`` alone."""
    determiner, other = PRONOUNS[word.lower()]
    return _same_case(determiner if tag == "PRP$" else other, word)


def counterfactuals(sentence: int, text: str, sites: Sequence[Site], seed: int = 13,
                    variants: int = 3) -> list[Counterfactual]:
    """The counterfactuals of one sentence: ``variants`` per name kind with a site, one for pronouns.

    Within a variant, distinct names get distinct replacements, never the name itself; the draws come from a
    generator seeded by ``(seed, sentence, kind)``.
    """
    out = []
    for k, kind in enumerate(KINDS):
        mine = [s for s in sites if s.kind == _SITE_OF[kind]]
        if not mine:
            continue
        if kind == "pronoun":
            new = [swap_pronoun(s.text, s.tag) for s in mine]
            out.append(Counterfactual(sentence, kind, replace_spans(text, [(s.start, s.end, w) for s, w in
                                                                           zip(mine, new)]),
                                      tuple((s.text, w) for s, w in zip(mine, new))))
            continue
        names = list(dict.fromkeys(s.text for s in mine))  # distinct, in order of appearance
        own = {x.lower() for x in names}
        pool = [x for x in _NAMES[kind] if x.lower() not in own]
        order = np.random.default_rng([seed, sentence, k]).permutation(len(pool))
        for v in range(variants):
            pick = {x: pool[order[(v * len(names) + j) % len(pool)]] for j, x in enumerate(names)}
            out.append(Counterfactual(sentence, kind, replace_spans(text, [(s.start, s.end, pick[s.text])
                                                                           for s in mine]),
                                      tuple((x, pick[x]) for x in names)))
    return out


# ------------------------------------------------------------------------------------------------- arithmetic
def _figures(pairs: list[tuple[int, bool, float]], sentences: set[int]) -> KindFigures:
    """``pairs``: (sentence, flipped, |shift|)."""
    shifts = np.asarray([p[2] for p in pairs], dtype=np.float64)
    flips = sum(p[1] for p in pairs)
    return KindFigures(n=len(sentences), pairs=len(pairs), flips=flips,
                       flip_rate=round(flips / len(pairs), 6) if pairs else None,
                       sentences_flipped=len({p[0] for p in pairs if p[1]}),
                       mean_abs_shift=round(float(shifts.mean()), 6) if pairs else None,
                       max_abs_shift=round(float(shifts.max()), 6) if pairs else None)


def summarise(texts: Sequence[str], probs: np.ndarray, cfs: Sequence[Counterfactual], cf_probs: np.ndarray,
              labels: Sequence[str] | None = None, top: int = 20, **meta: Any) -> FairnessReport:
    """The report from the original sentences' and the counterfactuals' probabilities.

    Args:
        texts: The original sentences (``Counterfactual.sentence`` indexes them).
        probs: (N, 3) probabilities of ``texts`` in the order of :data:`LABELS`.
        cfs: The counterfactuals.
        cf_probs: (M, 3) probabilities of ``cfs``, same order.
        labels: The gold labels of ``texts``, for the test accuracy and macro-F1 (else left out).
        top: The worst flips kept (largest shift first).
        meta: ``artifact``, ``data``, ``entity_blind``, ``seed``, ``variants``: recorded as they are.
    """
    probs, cf_probs = np.asarray(probs, dtype=np.float64), np.asarray(cf_probs, dtype=np.float64)
    if len(probs) != len(texts) or len(cf_probs) != len(cfs):
        raise ValueError(f"{len(texts)} sentences and {len(cfs)} counterfactuals need as many rows of probabilities; "
                         f"got {len(probs)} and {len(cf_probs)}")
    label = probs.argmax(-1) if len(probs) else np.zeros(0, dtype=int)
    score = probs[:, 0] - probs[:, 2] if len(probs) else np.zeros(0)
    by_kind: dict[str, list[tuple[int, bool, float]]] = {k: [] for k in KINDS}
    flips = []
    for cf, p in zip(cfs, cf_probs):
        i, after, s = cf.sentence, int(p.argmax()), float(p[0] - p[2])
        shift = abs(s - float(score[i]))
        by_kind[cf.kind].append((i, after != label[i], shift))
        if after != label[i]:
            flips.append(Flip(id=i, kind=cf.kind, swap=", ".join(f"{a} -> {b}" for a, b in cf.swaps),
                              before=LABELS[label[i]], after=LABELS[after], score_before=round(float(score[i]), 6),
                              score_after=round(s, 6), shift=round(shift, 6), text=texts[i],
                              counterfactual=cf.text))
    flips.sort(key=lambda f: (-f.shift, f.id, KINDS.index(f.kind), f.counterfactual))
    kinds = {k: _figures(pairs, {p[0] for p in pairs}) for k, pairs in by_kind.items()}
    overall = _figures([p for k in KINDS for p in by_kind[k]], {cf.sentence for cf in cfs})
    test: dict[str, float | int] = {}
    if labels is not None and len(labels):
        y = [LABELS.index(x) for x in labels]
        test = {"accuracy": round(accuracy(y, label), 6), "macro_f1": round(precision_recall_f1(y, label)["f1"], 6),
                "n": len(y)}
    return FairnessReport(**meta, meets_target=overall.flip_rate is not None and
                          overall.flip_rate <= TARGET_FLIP_RATE, overall=overall, kinds=kinds, test=test,
                          worst_flips=flips[:top], created_at=datetime.now(UTC))


# ------------------------------------------------------------------------------------------------ measurement
Progress = Callable[[str, int, int], None]  # (stage, done, total)


def measure(scorer, texts: Sequence[str], labels: Sequence[str] | None = None, nlp=None, seed: int = 13,
            variants: int = 3, top: int = 20, chunk: int = 256, progress: Progress | None = None,
            **meta: Any) -> FairnessReport:
    """Find the sites of ``texts``, build their counterfactuals, score everything with ``scorer`` (a
    :class:`~apps.finance_sentiment.scoring.SentimentScorer`: the model as served) and :func:`summarise`.

    Args:
        scorer: Anything with ``probabilities(texts) -> (N, 3)`` in the order of :data:`LABELS`.
        texts: The sentences measured.
        labels: Their gold labels (for the test accuracy and macro-F1), or None.
        nlp: A spaCy pipeline (default: :func:`load_nlp`).
        seed: Seed of the name draws.
        variants: Counterfactuals per sentence and name kind.
        top: Worst flips kept.
        chunk: Texts per call of the scorer (and per step of ``progress``).
        progress: Called as ``progress(stage, done, total)`` for the stages ``names`` and ``scoring``.
        meta: ``artifact``, ``data`` and ``entity_blind``, recorded as they are.

    Raises:
        FairnessError: No sentence to measure, or ``variants`` < 1.
    """
    if not texts:
        raise FairnessError("no sentence to measure")
    if variants < 1:
        raise FairnessError(f"variants must be >= 1, not {variants}")
    nlp = nlp if nlp is not None else load_nlp()
    tell = progress or (lambda stage, done, total: None)
    cfs: list[Counterfactual] = []
    for i, doc in enumerate(nlp.pipe(texts, batch_size=64)):
        cfs += counterfactuals(i, texts[i], find_sites(doc), seed=seed, variants=variants)
        if (i + 1) % chunk == 0 or i + 1 == len(texts):
            tell("names", i + 1, len(texts))
    everything = list(texts) + [cf.text for cf in cfs]
    parts = []
    for start in range(0, len(everything), chunk):
        parts.append(scorer.probabilities(everything[start:start + chunk]))
        tell("scoring", min(start + chunk, len(everything)), len(everything))
    p = np.concatenate(parts)
    log.info("fairness: %d sentences, %d counterfactuals", len(texts), len(cfs))
    return summarise(texts, p[:len(texts)], cfs, p[len(texts):], labels=labels, top=top, seed=seed,
                     variants=variants, **meta)
