"""Tests for core.engine: the InferenceEngine served from an artifact folder of a tiny model, and the Ensemble that
mixes several of them."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from core.adapters import apply_lora
from core.artifacts import ArtifactError, save_artifact
from core.config import InferenceConfig, ModelConfig
from core.engine import ENSEMBLE_FILE, MAX_CHARS, Ensemble, InferenceEngine, Prediction, write_ensemble
from core.generation import GenerationConfig
from core.modalities import InputError
from core.tasks import CoreModel, TaskSpec, UnknownTaskError

LABELS = ("refund", "card", "transfer")
TEXTS = [
    "my card was declined",
    "where is my refund",
    "the transfer has not arrived yet and i am worried about it",
    "hello",
    "shares fell sharply after the weak sales forecast",
]


@pytest.fixture(scope="module")
def artifact(tok, tmp_path_factory):
    """A tiny model with a text task and an image task, saved as an artifact."""
    torch.manual_seed(0)
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size),
                      [TaskSpec(name="intent", kind="classify", labels=LABELS),
                       TaskSpec(name="shapes", kind="image_classify", labels=("round", "square"))])
    with torch.no_grad():  # a freshly initialised head gives near-uniform probabilities; make them distinct
        model.heads["intent"].out.weight.normal_(0.0, 1.0)
    return save_artifact(tmp_path_factory.mktemp("engine") / "art", model.eval(), tok)


@pytest.fixture(scope="module")
def engine(artifact) -> InferenceEngine:
    return InferenceEngine(artifact, batch_size=2)


def test_embed_is_normalised_and_in_input_order(engine):
    emb = engine.embed(TEXTS)
    assert emb.shape == (len(TEXTS), engine.model.cfg.n_embd)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # batches are sorted by length (batch_size=2 here), yet every row belongs to its own text
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(engine.embed([text])[0], emb[i], atol=1e-5)
    assert not np.allclose(emb[0], emb[1], atol=1e-3)


def test_classify_returns_labels_of_the_task(engine):
    preds = engine.classify(TEXTS, "intent")
    probs = engine.classify_proba(TEXTS, "intent")
    assert probs.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert len(preds) == len(TEXTS)
    for p, row in zip(preds, probs):
        assert isinstance(p, Prediction)
        assert p.label == LABELS[int(row.argmax())]
        assert p.score == pytest.approx(float(row.max()))
        assert list(p.probs) == list(LABELS)
    assert engine.tasks["intent"].labels == LABELS


def test_classify_images_accepts_a_uint8_batch(engine):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    preds = engine.classify_images(images)  # the only image task is picked by default
    assert [p.label in ("round", "square") for p in preds] == [True] * 3
    np.testing.assert_allclose(engine.classify_images_proba(images, "shapes").sum(1), 1.0, atol=1e-5)


def test_empty_text_raises_input_error(engine):
    with pytest.raises(InputError, match="text 1 is empty"):
        engine.embed(["fine", "   "])
    with pytest.raises(InputError, match="text 0 is empty"):
        engine.classify([""], "intent")
    with pytest.raises(InputError, match="not str"):
        engine.embed(["fine", 3])
    with pytest.raises(TypeError, match="list of texts"):
        engine.embed("a single string")


def test_very_long_text_is_truncated_with_a_warning(engine, caplog):
    text = "the card payment was declined " * 3400  # 102,000 characters
    assert len(text) > 100_000
    with caplog.at_level(logging.WARNING, logger="core.engine"):
        out = engine.classify([text, "hello"], "intent")
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"reading the first {MAX_CHARS}" in m for m in messages), messages
    assert any("truncated to 128" in m for m in messages), messages
    assert len(out) == 2 and out[0].label in LABELS
    # the result is that of the first 128 tokens ([SEP] kept last)
    ids = engine._encode(["the card payment was declined " * 40])[0]
    assert len(ids) == 128 and ids[-1] == engine.tok.sep_id


def test_images_of_wrong_shape_raise_input_error(engine):
    with pytest.raises(InputError):
        engine.classify_images(np.zeros((1, 2, 1, 28, 28), dtype=np.uint8), "shapes")
    with pytest.raises(InputError, match="not an image classifier"):
        engine.classify_images(np.zeros((1, 28, 28), dtype=np.uint8), "intent")
    with pytest.raises(InputError, match="not a text classifier"):
        engine.classify(["hello"], "shapes")


def test_unknown_task_names_the_known_ones(engine):
    with pytest.raises(UnknownTaskError) as err:
        engine.classify(["hello"], "sentiment")
    msg = str(err.value)
    assert "unknown task 'sentiment'" in msg
    assert "intent" in msg and "shapes" in msg
    assert isinstance(err.value, KeyError)


def test_quantized_engine_is_close_to_fp32(artifact, engine, corpus):
    q = InferenceEngine(artifact, InferenceConfig(runtime="torch-int8"))
    assert q.runtime == "torch-int8"
    int8 = [m for m in q.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(int8) == 6 * 2 + 2 + 1 + 2  # blocks, LM head dense, intent + shapes heads, series encoder MLP
    assert not any(type(m) is torch.nn.Linear for m in q.model.modules())
    texts = TEXTS + corpus
    p32 = engine.classify_proba(texts, "intent")
    p8 = q.classify_proba(texts, "intent")
    np.testing.assert_allclose(p8.sum(1), 1.0, atol=1e-5)
    assert np.abs(p8 - p32).max() < 0.05
    assert (p8.argmax(1) == p32.argmax(1)).mean() >= 0.8
    e32, e8 = engine.embed(texts), q.embed(texts)
    assert (e32 * e8).sum(1).min() > 0.99  # cosine of unit vectors


def test_generate_returns_one_string_per_prompt(engine):
    cfg = GenerationConfig(max_new_tokens=5)
    outs = engine.generate(["my card", "where is"], cfg)
    assert len(outs) == 2 and all(isinstance(o, str) for o in outs)
    assert outs == engine.generate(["my card", "where is"], cfg)  # greedy: deterministic
    assert all("[" not in o for o in outs)  # special tokens are banned or dropped


def test_from_model_serves_a_model_in_memory(tok):
    torch.manual_seed(0)
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size))
    eng = InferenceEngine.from_model(model, tok, max_length=16)
    assert not model.training
    emb = eng.embed(["hello world"])
    assert emb.shape == (1, 32)


def test_occlusion_attribution_is_the_drop_when_the_word_is_left_out(engine):
    text = "the card payment was declined"
    w = {LABELS[0]: 1.0, LABELS[1]: -1.0}
    (words,) = engine.explain([text], "intent", weights=w)
    assert [wd for wd, _ in words] == text.split()

    def score(t):
        p = engine.classify_proba([t], "intent")[0]
        return np.log(p[0]) - np.log(p[1])

    full = score(text)
    for k, (word, attribution) in enumerate(words):
        without = " ".join(x for i, x in enumerate(text.split()) if i != k)
        assert attribution == pytest.approx(full - score(without), abs=1e-4), word


def _occlusion_reference(engine, text, task, w=None):
    """Occlusion the plain way: the text and each variant without one word, one at a time through the model (no
    batch, no padding); a ``##`` piece belongs to the word before it."""
    seq = engine.tok.encode_batch([text])[0]
    words: list[tuple[str, list[int]]] = []
    for i, t in enumerate(engine.tok.token_strings(seq[1:-1]), start=1):
        if t.startswith("##") and words:
            words[-1] = (words[-1][0] + t[2:], words[-1][1] + [i])
        else:
            words.append((t, [i]))

    def logp(ids):
        with torch.no_grad():
            x = torch.tensor([ids])
            return torch.log_softmax(engine.model.classify(task, x, torch.ones_like(x, dtype=torch.bool)), -1)[0]

    full = logp(seq)
    pick = torch.tensor(w) if w is not None else torch.nn.functional.one_hot(full.argmax(), len(full)).float()
    return [(word, float((full - logp([t for i, t in enumerate(seq) if i not in pos])) @ pick))
            for word, pos in words]


LONG = ["unbelievably the quarterly transfer of shares was declined",  # words the vocabulary splits into ## pieces
        "card", "the company reported a strong rise in quarterly profit and the shares fell sharply after it"]


@pytest.mark.parametrize("bucket", [True, False])
@pytest.mark.parametrize("weights", [{LABELS[0]: 1.0, LABELS[2]: -1.0}, None])
def test_occlusion_of_many_texts_at_once_matches_one_variant_at_a_time(artifact, tok, bucket, weights):
    texts = TEXTS + LONG + TEXTS[:1]  # a text met twice is explained once, the same each time
    assert any(t.startswith("##") for t in tok.token_strings(tok.encode_batch(LONG[:1])[0]))
    engine = InferenceEngine(artifact, InferenceConfig(bucket_by_length=bucket), batch_size=5)
    got = engine.explain(texts, "intent", weights=weights)
    w = [weights.get(lab, 0.0) for lab in LABELS] if weights else None
    for text, words in zip(texts, got):
        want = _occlusion_reference(engine, text, "intent", w)
        assert [wd for wd, _ in words] == [wd for wd, _ in want]
        np.testing.assert_allclose([a for _, a in words], [a for _, a in want], atol=1e-5)
    # max_words keeps the first words, with the same attributions
    (first,) = engine.explain(LONG[2:], "intent", weights=weights, max_words=3)
    full = got[texts.index(LONG[2])]
    assert [wd for wd, _ in first] == [wd for wd, _ in full[:3]]
    np.testing.assert_allclose([a for _, a in first], [a for _, a in full[:3]], atol=1e-5)


def test_a_repeated_text_goes_through_the_model_once(engine):
    rows = []
    handle = engine.model.backbone.register_forward_hook(lambda mod, args, out: rows.append(out.size(0)))
    try:
        once = engine.explain(LONG[:1], "intent")
        n_once = sum(rows)
        rows.clear()
        twice = engine.explain(LONG[:1] * 2 + [" " + LONG[0]], "intent")  # the same tokens, written differently
    finally:
        handle.remove()
    assert sum(rows) == n_once == 1 + len(once[0])  # the text and each variant without one word
    assert twice == [once[0]] * 3


def test_explain_rejects_unknown_classes(engine):
    with pytest.raises(InputError, match="unknown classes"):
        engine.explain(["hello"], "intent", weights={"nope": 1.0})


@pytest.mark.parametrize("texts, match", [(["fine", "  "], "text 1 is empty"), (["fine", 3], "text 1 is int")])
def test_explain_refuses_bad_texts_in_one_line(engine, texts, match):
    with pytest.raises(InputError, match=match) as err:
        engine.explain(texts, "intent")
    assert "\n" not in str(err.value)


def test_ensemble_explains_as_the_weighted_mix_of_its_members(tok):
    engines = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size),
                          [TaskSpec(name="intent", kind="classify", labels=LABELS)])
        with torch.no_grad():
            model.heads["intent"].out.weight.normal_(0.0, 1.0)
        engines.append(InferenceEngine.from_model(model, tok, batch_size=4))
    ens = Ensemble([(e, "intent") for e in engines], [3.0, 1.0])
    w = {LABELS[0]: 1.0, LABELS[1]: -1.0}
    a, b = (e.explain(TEXTS, "intent", weights=w) for e in engines)
    got = ens.explain(TEXTS, weights=w)
    for mixed, wa, wb in zip(got, a, b):
        assert [wd for wd, _ in mixed] == [wd for wd, _ in wa]
        np.testing.assert_allclose([x for _, x in mixed], [0.75 * x + 0.25 * y for (_, x), (_, y) in zip(wa, wb)],
                                   atol=1e-6)
    assert max(abs(x) for words in got for _, x in words) > 1e-3  # the members do attribute something


def test_embed_base_switches_every_adapter_off(tok):
    torch.manual_seed(0)
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size))
    plain = InferenceEngine.from_model(model, tok).embed(TEXTS)
    apply_lora(model.backbone, "other", r=2)
    for name, p in model.named_parameters():
        if name.endswith("lora_B.other"):
            torch.nn.init.normal_(p, std=0.5)  # an adapter that changes the output
    eng = InferenceEngine.from_model(model, tok)
    eng.use_adapter("other")
    assert np.abs(eng.embed(TEXTS) - plain).max() > 1e-3
    np.testing.assert_allclose(eng.embed(TEXTS, base=True), plain, atol=1e-6)


def _fixed_member(tok, folder, labels, probs, task="intent"):
    """An artifact whose ``task`` gives the probabilities ``probs`` (in ``labels`` order) for every text: a zero weight
    matrix and the log-probabilities as bias."""
    torch.manual_seed(0)
    spec = TaskSpec(name=task, kind="classify", labels=labels)
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size), [spec])
    with torch.no_grad():
        model.heads[task].out.weight.zero_()
        model.heads[task].out.bias.copy_(torch.log(torch.tensor(probs)))
    return save_artifact(folder, model.eval(), tok)


@pytest.fixture(scope="module")
def ensemble_dir(tok, tmp_path_factory):
    """An ensemble folder: member ``a`` gives refund / card / transfer 0.5 / 0.3 / 0.2; member ``b``, whose labels come
    in another order, gives transfer / refund / card 0.6 / 0.1 / 0.3; weights 3 and 1."""
    folder = tmp_path_factory.mktemp("ensemble")
    _fixed_member(tok, folder / "members" / "a", LABELS, [0.5, 0.3, 0.2])
    _fixed_member(tok, folder / "members" / "b", ("transfer", "refund", "card"), [0.6, 0.1, 0.3], task="intent-b")
    write_ensemble(folder, ["members/a", "members/b"], [3.0, 1.0], "intent", tasks=["intent", "intent-b"],
                   kinds=["full", "full"], validation={"accuracy": 0.5})
    return folder


def test_ensemble_mixes_member_probabilities_by_their_weights(ensemble_dir):
    ens = Ensemble.load(ensemble_dir)
    assert ens.task == "intent" and ens.labels == LABELS
    assert [m.weight for m in ens.members] == pytest.approx([0.75, 0.25])
    # by hand, in the first member's label order: 0.75 * (0.5, 0.3, 0.2) + 0.25 * (0.1, 0.3, 0.6)
    want = np.array([0.4, 0.3, 0.3])
    probs = ens.classify_proba(TEXTS)
    np.testing.assert_allclose(probs, np.tile(want, (len(TEXTS), 1)), atol=1e-5)
    np.testing.assert_allclose(ens.classify_proba(TEXTS, "intent"), probs)
    pred = ens.classify(["my card was declined"])[0]
    assert pred.label == "refund" and pred.score == pytest.approx(0.4, abs=1e-5)
    assert pred.probs == pytest.approx(dict(zip(LABELS, want)), abs=1e-5)
    assert ens.tasks["intent"].labels == LABELS and ens.tasks["intent"].kind == "classify"
    with pytest.raises(UnknownTaskError, match="answers 'intent'"):
        ens.classify_proba(TEXTS, "sentiment")


def test_ensemble_json_round_trips_and_keeps_its_record(ensemble_dir, tmp_path, tok):
    spec = json.loads((ensemble_dir / ENSEMBLE_FILE).read_text())
    assert spec == {"task": "intent", "members": ["members/a", "members/b"], "weights": [3.0, 1.0],
                    "tasks": ["intent", "intent-b"], "kinds": ["full", "full"], "validation": {"accuracy": 0.5}}
    # members given as engines mix exactly as the loaded folder does
    a, b = (InferenceEngine(ensemble_dir / "members" / m) for m in ("a", "b"))
    made = Ensemble([(a, "intent"), (b, "intent-b")], [3.0, 1.0])
    np.testing.assert_allclose(made.classify_proba(TEXTS), Ensemble.load(ensemble_dir).classify_proba(TEXTS))
    # one task for every member: no ``tasks`` written; "." is the folder's own artifact, served by the engine given
    own = _fixed_member(tok, tmp_path / "own", LABELS, [0.2, 0.2, 0.6])
    write_ensemble(own, [".", str(ensemble_dir / "members" / "a")], [1.0, 1.0], "intent")
    assert "tasks" not in json.loads((own / ENSEMBLE_FILE).read_text())
    engine = InferenceEngine(own)
    ens = Ensemble.load(own, "intent", engine=engine)
    assert ens.members[0].engine is engine
    np.testing.assert_allclose(ens.classify_proba(["hello"])[0], [0.35, 0.25, 0.4], atol=1e-5)
    # a folder without ensemble.json is its own single member
    single = Ensemble.load(ensemble_dir / "members" / "a", "intent")
    np.testing.assert_allclose(single.classify_proba(["hello"])[0], [0.5, 0.3, 0.2], atol=1e-5)


def test_member_of_weight_zero_is_neither_loaded_nor_run(ensemble_dir, tmp_path):
    write_ensemble(tmp_path, [str(ensemble_dir / "members" / "a"), "missing"], [1.0, 0.0], "intent")
    ens = Ensemble.load(tmp_path)
    assert len(ens.members) == 1
    np.testing.assert_allclose(ens.classify_proba(["hello"])[0], [0.5, 0.3, 0.2], atol=1e-5)


@pytest.mark.parametrize("case, match", [
    ("missing member", "member 'members/c' of the ensemble in .*artifact folder not found"),
    ("malformed json", "ensemble.json is malformed"),
    ("no members key", "ensemble.json is malformed"),
    ("weights do not fit", "3 members, 2 weights"),
    ("other labels", "classify into other labels"),
    ("unknown task", "no text classification task 'nope'"),
    ("negative weight", "non-negative weight"),
])
def test_bad_ensemble_gives_a_one_line_error(ensemble_dir, tmp_path, tok, case, match):
    a, b = str(ensemble_dir / "members" / "a"), str(ensemble_dir / "members" / "b")
    spec = {"task": "intent", "members": [a, b], "weights": [1, 1], "tasks": ["intent", "intent-b"]}
    if case == "missing member":
        spec["members"][1] = "members/c"
    elif case == "no members key":
        del spec["members"]
    elif case == "weights do not fit":
        spec.update(members=[a, a, a], tasks=["intent"] * 3)
    elif case == "other labels":
        _fixed_member(tok, tmp_path / "odd", ("up", "down", "flat"), [0.2, 0.3, 0.5])
        spec.update(members=[a, str(tmp_path / "odd")], tasks=["intent", "intent"])
    elif case == "unknown task":
        spec["tasks"][1] = "nope"
    elif case == "negative weight":
        spec["weights"] = [1, -1]
    text = "{not json" if case == "malformed json" else json.dumps(spec)
    (tmp_path / ENSEMBLE_FILE).write_text(text)
    with pytest.raises(ArtifactError, match=match) as err:
        Ensemble.load(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(ArtifactError, match="answers task 'intent', not 'sentiment'"):
        write_ensemble(tmp_path, [a], [1.0], "intent")
        Ensemble.load(tmp_path, "sentiment")
