"""The dependency direction of ARCHITECTURE.md, checked by walking every import with ast.

Every ``import`` and ``from ... import`` counts, at module top or inside a function, relative ones resolved. The rules:

- ``core/`` imports no app (``apps``) and not ``streamlit``.
- An app (``apps/<app>/``) imports ``core``, ``apps.common`` and its own package, never another app nor the edge
  modules that compose the apps (``apps.cli``, ``apps.suite``, ``apps.forget``, ``apps.settings_doc``, ``apps.demo``,
  ``apps.model_cards``).
  ``apps/common/`` is shared by the apps and imports none of them. The edge modules may import any app.
- Online code never imports the app's ``pipeline`` (training and evaluation). Online is ``service.py``, ``ui/``, the
  online jobs (:data:`ONLINE_JOBS`: the finance workers, the recommender's batch job), and every module of the app
  that those import, directly or through one another.
- UI views (``apps/<app>/ui/views/*.py``) import none of torch, faiss, sqlalchemy or core, and of their app only its
  ``ui`` package (the service comes through ``ui/resources.py``) and ``schemas``.

Each test lists every violation as ``file:line``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ("customer_service", "finance_sentiment", "recommender")
EDGE = ("apps.cli", "apps.suite", "apps.forget", "apps.settings_doc", "apps.demo", "apps.model_cards")
ONLINE_JOBS = {"finance_sentiment": ("monitor", "jobs"), "recommender": ("batch",)}
LIGHTNING_ALLOWED = {"data.py", "lit.py", "train.py"}


@dataclass(frozen=True)
class Import:
    """One imported name: ``import a.b`` gives ``a.b``; ``from a.b import c`` gives ``a.b.c``."""

    path: Path
    line: int
    name: str

    def within(self, *modules: str) -> bool:
        """Whether the imported name is one of ``modules`` or inside one of them."""
        return any(self.name == m or self.name.startswith(m + ".") for m in modules)

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line} " \
               f"imports {self.name}"


def module_name(path: Path) -> str:
    """``apps/x/ui/views/a.py`` -> ``apps.x.ui.views.a``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, module: str | None = None) -> list[Import]:
    """Every name ``path`` imports, anywhere in the file, with its line (``module``: the file's dotted name, by default
    from its place under the repository, to resolve relative imports)."""
    module = module if module is not None else module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [Import(path, node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                head = package[:len(package) - node.level + 1]
                base = ".".join(head + ([node.module] if node.module else []))
            out += [Import(path, node.lineno, f"{base}.{a.name}" if a.name != "*" else base) for a in node.names]
    return out


def py_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def check(violations: list[Import], rule: str) -> None:
    """Fail with one line per import statement that breaks ``rule`` (``file:line imports a, b``), if any."""
    lines: dict[str, list[str]] = {}
    for i in violations:
        where = str(i).rsplit(" imports ", 1)[0]
        lines.setdefault(where, []).append(i.name)
    if lines:
        pytest.fail(f"{len(lines)} import(s) break the rule: {rule}\n" + "\n".join(
            f"{where} imports {', '.join(names)}" for where, names in lines.items()), pytrace=False)


def test_imports_walker_sees_every_form_with_its_line(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import torch.nn as nn\nfrom apps.cli import main\n\n\ndef g():\n    from . import sibling\n"
                 "    from ..common import db\n")
    found = [(i.line, i.name) for i in imports_of(f, "apps.customer_service.ui.x")]
    assert found == [(1, "torch.nn"), (2, "apps.cli.main"), (6, "apps.customer_service.ui.sibling"),
                     (7, "apps.customer_service.common.db")]
    assert Import(f, 1, "torch.nn").within("torch") and not Import(f, 1, "torchvision").within("torch")


def test_core_imports_neither_apps_nor_streamlit():
    bad = [i for p in py_files("core") for i in imports_of(p) if i.within("apps", "streamlit")]
    check(bad, "core imports no app and not streamlit")


@pytest.mark.parametrize("path", py_files("core"), ids=lambda p: p.name)
def test_lightning_only_in_data_lit_train(path):
    uses = [i for i in imports_of(path) if i.within("lightning", "pytorch_lightning")]
    check([] if path.name in LIGHTNING_ALLOWED else uses, "Lightning only in data.py, lit.py, train.py")


def test_model_py_has_no_framework_imports():
    mods = {i.name.split(".")[0] for i in imports_of(ROOT / "core" / "model.py")}
    assert mods <= {"__future__", "math", "dataclasses", "torch", "core", "typing"}, mods


def test_no_app_imports_another_app_or_the_edge():
    bad = []
    for app in APPS:
        others = [f"apps.{o}" for o in APPS if o != app]
        bad += [i for p in py_files(f"apps/{app}") for i in imports_of(p) if i.within(*others, *EDGE)]
    check(bad, "an app imports core, apps.common and itself only")


def test_common_imports_no_app():
    bad = [i for p in py_files("apps/common") for i in imports_of(p) if i.within(*(f"apps.{a}" for a in APPS), *EDGE)]
    check(bad, "apps/common is shared by the apps and imports none of them")


def online_modules(app: str) -> dict[str, Path]:
    """The app's online modules: service, ui, the online jobs, and every module of the app they reach by imports
    (not through pipeline, which is the violation itself)."""
    files = {module_name(p): p for p in py_files(f"apps/{app}")}
    pipeline = f"apps.{app}.pipeline"
    roots = [m for m in files if m in (f"apps.{app}.service", *(f"apps.{app}.{j}" for j in ONLINE_JOBS.get(app, ())))
             or m.startswith(f"apps.{app}.ui")]
    seen, todo = {}, list(roots)
    while todo:
        m = todo.pop()
        if m in seen or m == pipeline:
            continue
        seen[m] = files[m]
        for i in imports_of(files[m]):
            target = max((f for f in files if i.within(f)), key=len, default=None)  # the module the name lives in
            if target is not None:
                todo.append(target)
    return seen


@pytest.mark.parametrize("app", APPS)
def test_online_code_never_imports_pipeline(app):
    online = online_modules(app)
    assert f"apps.{app}.service" in online
    bad = [i for p in online.values() for i in imports_of(p) if i.within(f"apps.{app}.pipeline")]
    check(bad, f"online code (service, ui, {', '.join(ONLINE_JOBS.get(app, ())) or 'no jobs'} and "
                                "what they import) never imports pipeline")


def test_no_ui_uses_a_pages_folder():
    assert not list((ROOT / "apps").glob("*/ui/pages")), "name the folder ui/views/ (see the comment below)"


@pytest.mark.parametrize("app", APPS)
def test_ui_views_import_neither_torch_faiss_sqlalchemy_core_nor_the_app_below_ui(app):
    # the pages live in ui/views/: a folder called pages/ beside app.py switches Streamlit to its old multipage mode
    views = sorted((ROOT / "apps" / app / "ui" / "views").glob("*.py"))
    assert views
    bad = [i for p in views for i in imports_of(p)
           if i.within("torch", "faiss", "sqlalchemy", "core")
           or (i.within(f"apps.{app}") and not i.within(f"apps.{app}.ui", f"apps.{app}.schemas"))]
    check(bad, "a view imports its app's ui package (resources) and schemas only, and no torch, "
                                "faiss, sqlalchemy or core")


def test_torch_load_always_weights_only():
    for path in py_files("core") + py_files("apps") + py_files("bench"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "load" \
                    and getattr(node.func.value, "id", "") == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kw and getattr(kw["weights_only"], "value", None) is True, \
                    f"{path.relative_to(ROOT)}:{node.lineno} torch.load without weights_only=True"
