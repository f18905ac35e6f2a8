"""The dependency direction of ARCHITECTURE.md, checked by walking every import with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ("customer_service", "finance_sentiment", "recommender")
LIGHTNING_ALLOWED = {"data.py", "lit.py", "train.py"}


def imports_of(path: Path) -> set[str]:
    """Top-level dotted names imported by a file (``import a.b`` and ``from a.b import c`` give ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def py_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_imports_walker_sees_both_import_forms(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import torch.nn as nn\nfrom apps.cli import main\nfrom . import sibling\n")
    assert imports_of(f) == {"torch.nn", "apps.cli"}


@pytest.mark.parametrize("path", py_files("core"), ids=lambda p: p.name)
def test_core_imports_neither_apps_nor_streamlit(path):
    bad = {m for m in imports_of(path) if m.split(".")[0] in ("apps", "streamlit")}
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", py_files("core"), ids=lambda p: p.name)
def test_lightning_only_in_data_lit_train(path):
    uses = {m for m in imports_of(path) if m.split(".")[0] in ("lightning", "pytorch_lightning")}
    assert not uses or path.name in LIGHTNING_ALLOWED, f"{path.name} imports {uses}"


def test_model_py_has_no_framework_imports():
    mods = {m.split(".")[0] for m in imports_of(ROOT / "core" / "model.py")}
    assert mods <= {"__future__", "math", "dataclasses", "torch", "core", "typing"}, mods


@pytest.mark.parametrize("app", APPS)
def test_no_app_imports_another_app(app):
    for path in py_files(f"apps/{app}") if (ROOT / "apps" / app).is_dir() else []:
        others = {m for m in imports_of(path) if any(m.startswith(f"apps.{o}") for o in APPS if o != app)}
        assert not others, f"{path.relative_to(ROOT)} imports {others}"


def test_no_ui_uses_a_pages_folder():
    assert not list((ROOT / "apps").glob("*/ui/pages")), "name the folder ui/views/ (see the comment below)"


@pytest.mark.parametrize("app", APPS)
def test_ui_pages_never_import_torch_faiss_or_core(app):
    # the pages live in ui/views/: a folder called pages/ beside app.py switches Streamlit to its old multipage mode
    pages = ROOT / "apps" / app / "ui" / "views"
    for path in sorted(pages.rglob("*.py")) if pages.is_dir() else []:
        bad = {m for m in imports_of(path) if m.split(".")[0] in ("torch", "faiss", "core")}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_torch_load_always_weights_only():
    for path in py_files("core") + py_files("apps") + py_files("bench"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "load" \
                    and getattr(node.func.value, "id", "") == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kw and getattr(kw["weights_only"], "value", None) is True, \
                    f"{path.relative_to(ROOT)}:{node.lineno} torch.load without weights_only=True"
