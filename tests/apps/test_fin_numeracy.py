"""Numeric comparison hints: which way a sentence's figures moved (apps.finance_sentiment.numeracy)."""

from __future__ import annotations

import pytest

from apps.finance_sentiment.numeracy import amounts, comparisons, with_hints


def directions(text: str) -> list[str]:
    return [c.direction for c in comparisons(text)]


@pytest.mark.parametrize(("text", "expected"), [
    # NEW ( OLD ), the Nordic interim-report form
    ("Net sales were EUR 73.3 mn ( EUR 72.5 mn ) .", ["increase"]),
    ("Operating profit was EUR 1.6 mn ( EUR 2.1 mn ) .", ["decrease"]),
    # NEW ..., compared to / with / versus OLD
    ("Operating profit totalled EUR 17.7 mn compared to EUR 17.6 mn in the same period .", ["increase"]),
    ("Revenue of $5.2 billion compared with $4.8 billion a year ago.", ["increase"]),
    ("In the period , EPS stood at EUR0 .07 versus EUR0 .11 .", ["decrease"]),
    ("Profitability was 13.9 % , compared to 13.1 % in the previous year .", ["increase"]),
    # NEW ... from OLD
    ("Net profit rose to EUR 5.2 million in 2025 from EUR 3.1 million in 2024 .", ["increase"]),
    ("The stake was cut to 40.5 pct from 74.5 pct .", ["decrease"]),
    ("Net interest income was EUR 39.3 mn , up from EUR 32.7 mn .", ["increase"]),
    ("Net profit soared to SEK6 .745 bn in 2010 from a year-earlier SEK1 .114 bn .", ["increase"]),
    # from OLD ... to NEW
    ("Operating profit fell from EUR 7.9 mn in the second quarter of 2005 to EUR 5.1 mn .", ["decrease"]),
    ("The order book grew from EUR 2 mn to EUR 3 mn .", ["increase"]),
    # the same figure
    ("Dividend was EUR 0.50 ( EUR 0.50 ) per share .", ["unchanged"]),
])
def test_comparison_forms_and_their_direction(text, expected):
    assert directions(text) == expected


def test_a_scale_given_once_counts_for_both_when_that_makes_them_closer():
    # "EUR 7.04" means EUR 7.04 mn here ...
    assert directions("The order book stood at EUR 8.77 mn compared to EUR 7.04 in 2005 .") == ["increase"]
    assert directions("Pretax profit rose to EUR 1,019 mn from EUR 1,007 in 2005 .") == ["increase"]
    # ... but EUR 416,000 is written out in full: 4.8 million against 416 thousand
    assert directions("Net profit rocketed to EUR4 .8 m in 2010 from EUR416 ,000 in 2009 .") == ["increase"]
    # and a new figure written in full against an old one in millions
    assert directions("Net profit fell to 884,000 euro ( $ 1.2 mln ) from 2.0 mln euro ( $ 2.7 mln ) .") == [
        "decrease"]


def test_a_swing_between_loss_and_profit_compares_signed_results_and_a_loss_against_a_loss_its_size():
    assert directions("Operating loss totalled EUR 3.2 mn , compared to a profit of EUR 7.2 mn .") == ["decrease"]
    assert directions("It swung to a net profit of EUR 8 mn from a net loss of EUR 2.6 mn .") == ["increase"]
    # a loss that widened is an increase of the figure (the model reads "loss" beside it)
    assert directions("The net loss widened to EUR 4.8 mn from EUR 2.3 mn .") == ["increase"]
    assert directions("The net loss narrowed to EUR 1.1 mn from EUR 2.3 mn .") == ["decrease"]
    assert directions("Operating profit totaled EUR 5.5 mn , up from EUR -0.7 mn .") == ["increase"]


@pytest.mark.parametrize("text", [
    "The cost of the deal could range from 70 million to 90 million euros .",  # a range
    "Capacities ranging from EUR 2 mn to EUR 13 mn were offered .",
    "Nokia sold 45 phones in 2009 and 60 phones in 2010 .",  # bare counts and years
    "The upgrade raises capacity from 450 MHz to 630 MHz .",  # not amounts
    "The project is valued at SEK 30bn ( EUR 2.83 bn ) .",  # a currency conversion, not a comparison
    "Sales grew 16 % to EUR 74.8 mn .",  # a percentage against money
    "Profit increased from EUR 13.6 mn , while net sales increased from EUR 394.7 mn .",  # two metrics, two clauses
    "The company was founded in 1998 .",
    "",
])
def test_what_is_not_a_comparison(text):
    assert comparisons(text) == []
    assert with_hints(text) == text


def test_amounts_read_phrasebank_numbers_scales_currencies_and_drop_years_and_conversions():
    got = [(a.number, a.scale, a.kind) for a in amounts(
        "In 2010 sales were EUR297 .3 m ( USD 390 m ) , 12.5 % more , and costs 7.99 mln euro .")]
    assert got == [(297.3, 1e6, "EUR"), (12.5, None, "%"), (7.99, 1e6, "EUR")]
    assert [a.value for a in amounts("EUR 1,250,000 and EUR 3 bn and 416 ,000 euro")] == [1.25e6, 3e9, 416000.0]


def test_with_hints_appends_each_direction_in_order_up_to_a_limit():
    text = ("Net sales decreased to EUR 221.6 mn from EUR 241.1 mn , while operating profit rose to EUR 8.0 mn "
            "from EUR 7.6 mn .")
    assert with_hints(text) == text + " [decrease] [increase]"
    assert with_hints(text, limit=1) == text + " [decrease]"
    # the text itself is never changed, only followed by its hints
    assert with_hints(text).startswith(text)


def test_a_huge_text_is_read_whole():
    text = "Sales were EUR 5 mn ( EUR 4 mn ) . " * 3000  # 105,000 characters
    hints = comparisons(text)
    assert len(hints) == 3000 and {c.direction for c in hints} == {"increase"}
    assert with_hints(text) == text + " [increase]" * 3
