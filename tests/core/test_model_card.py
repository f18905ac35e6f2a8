"""Model cards of core artifacts: written with every artifact from what it records, written again by
``trident core model-card``, and every recorded text shown literally."""

from __future__ import annotations

import csv
import json
import re

import pytest

from apps.cli import main
from core.config import TrainConfig
from core.model_card import CARD_FILE, NO_FAIRNESS, SECTIONS, core_card, escape_markdown, read_card
from core.recipes import finetune_text, text_task

LABELS = ("negative", "positive", "a *starred* [label](http://x.test) <b>|pipe|</b>")


def sections(card: str) -> dict[str, str]:
    """``{section title: body}`` of a rendered card."""
    parts = re.split(r"^## (.+)$", card, flags=re.M)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def rows(body: str) -> list[list[str]]:
    """The cells of a Markdown table's body rows (header and rule left out), split at unescaped pipes."""
    lines = [ln for ln in body.splitlines() if ln.startswith("|")][2:]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A tiny random-init model fine-tuned for one epoch by the real recipe on a three-label file (one label full of
    Markdown), in a folder whose name holds Markdown too."""
    folder = tmp_path_factory.mktemp("card")
    data = folder / "toy_[data].csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(90):
            writer.writerow([f"{('bad awful', 'good great', 'odd strange')[i % 3]} day number {i}", LABELS[i % 3]])
    task = text_task("toy_task", data, "csv")
    return finetune_text([task], folder / "art", TrainConfig.quick(max_epochs=2, lr=1e-3), init_from="tiny")


def test_fit_writes_a_card_with_every_section_and_the_figures_the_artifact_records(artifact):
    config = json.loads((artifact / "config.json").read_text())
    card = (artifact / CARD_FILE).read_text()
    found = sections(card)
    assert list(found) == list(SECTIONS)
    training, source = config["meta"]["training"], config["meta"]["data"]["toy_task"]
    figures = {r[0]: r[1] for r in rows(found["Figures"])}
    assert figures["validation accuracy"] == f"{training['best_val_score']:.4f}"
    for metric, name in (("acc", "accuracy"), ("macro_f1", "macro-F1"), ("loss", "loss")):
        assert figures[f"validation {name} of toy\\_task"] == f"{training['final'][f'val/toy_task/{metric}']:.4f}"
    assert rows(found["Splits"]) == [["toy\\_task", str(source["train"]), str(source["val"]), str(source["test"]),
                                      "13", ""]]
    assert source["train"] + source["val"] + source["test"] == source["n"] == 90
    assert escape_markdown(str(source["path"])) in found["Data"]
    assert found["Fairness"] == NO_FAIRNESS
    assert "Label short English texts" in found["Intended use"] and "English only" in found["Limits"]
    assert {"epochs run": str(training["epochs"]), "optimizer steps": str(training["steps"]),
            "learning rate": "0.001", "at most epochs": "2"}.items() <= {r[0]: r[1] for r in
                                                                      rows(found["Training"])}.items()


def test_recorded_markdown_is_shown_literally_and_keeps_the_tables_whole(artifact):
    found = sections((artifact / CARD_FILE).read_text())
    task = next(r for r in rows(found["Model"]) if r[0] == "task toy\\_task")
    assert len(task) == 2  # the label's pipes did not split the row
    assert escape_markdown(LABELS[2]) in task[1]
    unescaped = [m.group() for m in re.finditer(r"(?<!\\)[<>*\[\]]", found["Model"])]
    assert unescaped == [], unescaped  # no tag, emphasis or link is made of the label
    assert "toy\\_\\[data\\].csv" in found["Data"]
    for header, body in ((h, b) for h, b in found.items() if b.startswith("|")):
        widths = {len(r) for r in rows(body)}
        assert len(widths) == 1, header


def test_escape_markdown_keeps_figures_and_escapes_what_markdown_reads():
    assert escape_markdown("0.8643 -12.5% 5e-05 #3 12:30:00") == "0.8643 -12.5% 5e-05 #3 12:30:00"
    assert escape_markdown("a|b *c* _d_ [e](f) <g> $h$ :red[i] :smile: `j`\nk") == \
        "a\\|b \\*c\\* \\_d\\_ \\[e\\](f) \\<g\\> \\$h\\$ \\:red\\[i\\] \\:smile: \\`j\\` k"
    assert escape_markdown(None) == "-"


def test_cli_writes_the_card_of_an_artifact_again_without_retraining(artifact, capsys):
    written = (artifact / CARD_FILE).read_text()
    weights = (artifact / "model.safetensors").stat().st_mtime_ns
    (artifact / CARD_FILE).unlink()
    fresh = read_card(artifact, lambda: core_card(artifact, json.loads((artifact / "config.json").read_text())))
    assert not fresh.written and fresh.markdown == written  # what a dashboard shows before the card is written
    capsys.readouterr()
    assert main(["core", "model-card", "--artifact", str(artifact)]) == 0
    assert capsys.readouterr().out.strip() == written.strip()
    assert (artifact / CARD_FILE).read_text() == written
    assert (artifact / "model.safetensors").stat().st_mtime_ns == weights


@pytest.mark.parametrize("case", ["missing", "no config", "corrupt config", "another format"])
def test_cli_on_a_missing_or_broken_artifact_is_one_error_line(case, tmp_path, capsys):
    folder = tmp_path / "art"
    if case != "missing":
        folder.mkdir()
    if case == "corrupt config":
        (folder / "config.json").write_text("{not json")
    if case == "another format":
        (folder / "config.json").write_text(json.dumps({"format": "something-else", "version": 1}))
    assert main(["core", "model-card", "--artifact", str(folder)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("error: ") and len(out.err.strip().splitlines()) == 1
    assert str(folder) in out.err
    assert not (folder / CARD_FILE).exists()
