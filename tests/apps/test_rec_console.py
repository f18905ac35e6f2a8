"""The recommender dashboard, page by page, with Streamlit's AppTest and the session's tiny artifact, reached through
the environment exactly as `streamlit run` would."""

from __future__ import annotations

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from apps.common.settings import REPO_ROOT
from apps.common.ui import escape_markdown
from tests.apps.apptest import USERS, add_users, fresh_service, sign_in, start_app  # noqa: F401 (an autouse fixture)

APP = REPO_ROOT / "apps" / "recommender" / "ui" / "app.py"



@pytest.fixture
def env(monkeypatch, tmp_path, rec_artifact):
    monkeypatch.setenv("REC_ARTIFACT", str(rec_artifact))
    monkeypatch.setenv("TRIDENT_VAR_DIR", str(tmp_path / "var"))  # the accounts' database and the cookie key
    monkeypatch.setenv("TRIDENT_DATABASE_URL", f"sqlite:///{tmp_path / 'trident.db'}")
    add_users()
    return rec_artifact


def start(page: str | None = None, user: str = USERS["analyst"]) -> AppTest:
    at = start_app(APP, page, user=user)
    return at


def frame(at: AppTest, column: str):
    return next(df.value for df in at.dataframe if column in df.value.columns)


@pytest.mark.parametrize("page, heading", [(None, "Recommendations"), ("views/metrics.py", "Evaluation"),
                                           ("views/items.py", "Item explorer")])
def test_each_page_loads_without_error(env, page, heading):
    at = start(page)
    assert heading in [h.value for h in at.subheader]
    assert not at.error


def test_picking_a_user_shows_history_and_recommendations_with_reasons(env):
    at = start()
    at.selectbox(key="user").set_value("u003").run()
    assert not at.exception and not at.error
    recs = frame(at, "why")
    assert len(recs) == 10 and recs["why"].str.startswith("close to").all()
    history = frame(at, "when")
    assert len(history) > 0 and not set(recs["title"]) & set(history["title"])
    assert any("generative model" in m.value for m in at.markdown)
    at.slider(key="k").set_value(5).run()
    assert len(frame(at, "why")) == 5


def test_an_unknown_user_is_answered_by_popularity_and_says_so(env):
    at = start()
    at.text_input(key="user_typed").set_value("someone-new").run()
    assert not at.exception and not at.error
    assert any("POPULARITY" in m.value for m in at.markdown)
    assert any("unknown user" in c.value for c in at.caption)
    assert len(frame(at, "why")) == 10 and frame(at, "why")["why"].str.startswith("popular").all()
    at.text_input(key="user_typed").set_value("").run()  # back to the list
    assert any("generative model" in m.value for m in at.markdown)


def test_metrics_page_shows_the_baselines(env):
    at = start("views/metrics.py")
    table = frame(at, "ndcg@10")
    assert table["model"].tolist() == ["generative model", "popularity", "sasrec"]
    assert len(frame(at, "lambda")) >= 2  # the MMR trade-off


def test_item_explorer_lists_neighbours(env):
    at = start("views/items.py")
    at.text_input(key="item_query").set_value("Inspector").run()
    assert at.selectbox(key="item").value.startswith("Inspector Vale")
    sims = frame(at, "similarity")
    assert len(sims) == 10 and not sims["title"].eq(at.selectbox(key="item").value.split(" [")[0]).any()
    at.text_input(key="item_query").set_value("no film has this name").run()
    assert any("No item matches" in i.value for i in at.info)


def test_model_card_page_shows_the_card_the_artifact_holds(env):
    at = start("views/model_card.py")
    assert not at.error
    assert [h.value for h in at.subheader] == [f"Model card: {env.name}"]
    assert any(escape_markdown(env / "MODEL_CARD.md") in c.value for c in at.caption)
    shown = "\n".join(m.value for m in at.main.markdown)
    assert shown.strip() == (env / "MODEL_CARD.md").read_text().partition("\n")[2].strip()
    report = json.loads((env / "report.json").read_text())
    assert f"| test NDCG@10, generative recommender | {report['ndcg@10']:.4f} |" in shown
    assert "## Limits" in shown and "## Fairness" in shown


def test_model_card_page_generates_the_card_of_an_artifact_without_one(env, monkeypatch, tmp_path):
    art = shutil.copytree(env, tmp_path / "older")
    card = (art / "MODEL_CARD.md").read_text().replace("Model card: rec", "Model card: older")
    (art / "MODEL_CARD.md").unlink()  # an artifact trained before cards existed
    monkeypatch.setenv("REC_ARTIFACT", str(art))
    at = start("views/model_card.py")
    assert not at.error and [h.value for h in at.subheader] == ["Model card: older"]
    assert any("Generated just now" in c.value for c in at.caption)
    assert "\n".join(m.value for m in at.main.markdown).strip() == card.partition("\n")[2].strip()
    assert not (art / "MODEL_CARD.md").exists()  # the dashboard only reads


def test_a_typed_user_id_is_shown_literally(env):
    typed = "**bold** [x](javascript:alert(1)) <script>"
    at = start()
    at.text_input(key="user_typed").set_value(typed).run()
    assert not at.exception and not at.error
    shown = [m.value for m in at.markdown]
    assert f"**Top picks** for {escape_markdown(typed)}: POPULARITY (unknown user)" in shown
    assert not any("](javascript" in m or "<script>" in m for m in shown)


def test_an_agent_is_refused_the_dashboard_in_one_line(env):
    at = sign_in(AppTest.from_file(APP, default_timeout=60).run(), USERS["agent"])
    assert [e.value for e in at.error] == ["Your account (role agent) cannot open the recommender dashboard."]
    assert not (at.subheader or at.dataframe or at.main.markdown or at.exception)
    assert "Recommendations" in [h.value for h in start(user=USERS["admin"]).subheader]  # an admin opens everything


def test_a_missing_artifact_is_a_sentence_not_a_traceback(env, monkeypatch, tmp_path):
    monkeypatch.setenv("REC_ARTIFACT", str(tmp_path / "nothing"))
    at = sign_in(AppTest.from_file(APP, default_timeout=60).run(), USERS["analyst"])
    assert not at.exception
    assert at.error and at.error[0].value.startswith("The recommender cannot start: No recommender artifact")
