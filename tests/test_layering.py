"""The package's tiers: every ``mmzoo`` import goes one way only (README, Layout).

A module may import its own package and the packages of LOWER tiers, never a
package of its own tier or above, and ``mmzoo.serving`` imports nothing from
mmzoo (the clients run where no model code is installed). Imports inside
functions count as much as those at the top of a file: a circle that works
only because an import is deferred is still a circle. The root ``mmzoo``
package assembles the zoo (it may import anything).
"""

from __future__ import annotations

import ast
import os

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mmzoo")

# Lowest first. One line of the README's Layout section per entry.
TIERS = [
    {"errors", "version", "registry", "distribute", "native_stderr", "files"},
    {"layers", "preprocessing", "metrics"},
    {"towers", "losses", "generation"},
    {"models"},
    {"data"},
    {"datasets"},
    {"evaluation"},
    {"matching"},
    {"tasks"},
    {"export", "reload_check"},
    {"training"},
    {"demo"},
    {"cli"},
]
STANDALONE = {"serving"}
TIER_OF = {name: i for i, names in enumerate(TIERS) for name in names}


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[: -len(".py")].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _imports(path: str):
    """``(line, imported module)`` for every ``mmzoo`` import in the file, relative ones resolved."""
    module = _module_name(path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "mmzoo" and len(parts) > 1 else None


def _modules():
    for root, _, files in os.walk(PACKAGE_DIR):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(root, name)


def test_every_package_has_a_tier():
    packages = {name[:-3] if name.endswith(".py") else name for name in os.listdir(PACKAGE_DIR)}
    packages -= {"__init__", "__pycache__", "__main__"}
    assert packages <= set(TIER_OF) | STANDALONE, sorted(packages - set(TIER_OF) - STANDALONE)


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: os.path.relpath(p, PACKAGE_DIR))
def test_imports_go_down_the_tiers_only(path):
    source = _top(_module_name(path))
    if source is None:  # the root package assembles the zoo
        return
    wrong = []
    for line, target in _imports(path):
        top = _top(target)
        if not target.startswith("mmzoo") or top == source or top in STANDALONE:
            continue  # not mmzoo, its own package, or the stand-alone serving clients
        if source in STANDALONE:
            wrong.append(f"line {line}: {target} (mmzoo.{source} stands alone)")
        elif top is None:  # the root: mmzoo.build / load_model load the models and datasets
            if TIER_OF[source] <= TIER_OF["datasets"]:
                wrong.append(f"line {line}: {target} (the root package imports the models and datasets)")
        elif top not in TIER_OF or TIER_OF[top] >= TIER_OF[source]:
            wrong.append(f"line {line}: {target} (tier {TIER_OF.get(top)} from tier {TIER_OF[source]})")
    assert not wrong, f"{os.path.relpath(path, PACKAGE_DIR)} imports upward: " + "; ".join(wrong)


def test_the_registry_is_a_leaf():
    imports = [t for _, t in _imports(os.path.join(PACKAGE_DIR, "registry.py")) if t.startswith("mmzoo")]
    assert imports == []
