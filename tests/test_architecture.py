"""The house rules of docs/code_map.md, checked on the source: which way imports go, and no private names
borrowed from another room.

A room is a top-level sub-package of statetrack (ops, layers, models, tasks, theory, train, reproduce, lm,
commands). These tests read the source with ``ast``; they import nothing of the library.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "statetrack"

# room -> rooms it must never import (data flows down: ops <- layers <- models <- train <- lm <- commands)
FORBIDDEN = {
    "ops": {"layers", "models", "tasks", "theory", "train", "reproduce", "lm", "commands"},
    "layers": {"models", "tasks", "theory", "train", "reproduce", "lm", "commands"},
    "models": {"tasks", "theory", "train", "reproduce", "lm", "commands"},
    "tasks": {"layers", "models", "train", "reproduce", "lm", "commands"},
    "theory": {"layers", "models", "train", "reproduce", "lm", "commands"},
    "train": {"reproduce", "lm", "commands"},
    "lm": {"reproduce", "commands"},  # lm may reuse train's optimiser, schedule and checkpoint pieces
    "reproduce": {"lm", "commands"},
}


def _room(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0] if len(rel) > 1 else ""  # "" = a module of the root package


def _imports(path: Path):
    """(absolute module, imported names) for each import in ``path``; relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = ["statetrack", *path.relative_to(SRC).parts[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, [a.name for a in node.names]


MODULES = sorted(SRC.rglob("*.py"))


def test_there_are_modules_to_check():
    assert len(MODULES) > 50


def _room_imports(path: Path):
    """(the importing room, the imported room, module parts, names) for each import of statetrack in ``path``."""
    for mod, names in _imports(path):
        parts = mod.split(".")
        if parts[0] == "statetrack" and len(parts) >= 2:
            yield _room(path), parts[1], parts, names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_one_way(path):
    for room, other, parts, _ in _room_imports(path):
        assert other not in FORBIDDEN.get(room, set()), f"{path.relative_to(SRC)} ({room}) imports {'.'.join(parts)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_names_from_another_room(path):
    """Inside a room anything goes; across rooms only public modules and names."""
    for room, other, parts, names in _room_imports(path):
        if other == room:
            continue
        mod = ".".join(parts)
        private = [p for p in parts[1:] if p.startswith("_") and p != "__init__"]
        assert not private, f"{path.relative_to(SRC)} imports the private module {mod}"
        bad = [n for n in names if n.startswith("_")]
        assert not bad, f"{path.relative_to(SRC)} imports private names {bad} from {mod}"
