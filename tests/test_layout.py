"""The layout's rules (docs/architecture.md): model/ needs no Flask, loadtest/ no tests/, private APIs in two modules."""

from __future__ import annotations

import ast
import re

import pytest

from loadtest.servers import ROOT

#: The two modules allowed to reach into a library's private parts.
SHORTCUT_MODULES = {"model/scorer.py", "service/internals.py"}
#: What reaching in looks like for the libraries the service uses.
PRIVATE_USE = re.compile(r"\._get_current_object\(|\._init_pool\(|\._base_predict\(|\._object\b|mmap_dict|"
                         r"from (?:flask|werkzeug|catboost|prometheus_client)\S*\._|import _")


def _python_files(*folders: str) -> list:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def _imported(path) -> set[str]:
    """The top-level names of everything a module imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", _python_files("model"), ids=lambda path: str(path.relative_to(ROOT)))
def test_model_imports_neither_flask_nor_the_service(path):
    """model/ is what production runs to score, usable without the web layer: no Flask, no werkzeug, no service/."""
    assert not _imported(path) & {"flask", "werkzeug", "service", "training", "loadtest", "tests"}


@pytest.mark.parametrize("path", _python_files("loadtest", "training"), ids=lambda path: str(path.relative_to(ROOT)))
def test_offline_tools_do_not_import_the_tests(path):
    """loadtest/ and training/ stand on their own: the tests import them, never the other way round."""
    assert "tests" not in _imported(path)


def test_private_library_parts_are_used_in_two_modules_only():
    """Every shortcut into Flask's, werkzeug's, CatBoost's or prometheus_client's private parts is in the two modules."""
    users = {str(path.relative_to(ROOT)) for path in _python_files("model", "service", "config")
             if PRIVATE_USE.search(path.read_text(encoding="utf-8"))}
    assert users == SHORTCUT_MODULES


@pytest.mark.parametrize("folder", ["model", "model/lifecycle", "service/replay", "service", "service/api", "service/http", "service/cache", "loadtest/bench",
                                    "service/observe", "service/lifecycle", "service/proxy", "training", "loadtest"])
def test_every_folder_says_what_lives_in_it(folder):
    """Each package opens with a docstring, and holds a handful of modules."""
    init = ROOT / folder / "__init__.py"
    assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), f"{init} has no docstring"
    assert len(list((ROOT / folder).glob("*.py"))) <= 16
