"""The import edges ARCHITECTURE.md allows, checked on the source (``ast``, nothing imported).

- ``vow.coordinator`` (the Redis side) imports nothing of ``vow.worker``, ``vow.cli`` or the
  process helpers; ``vow.worker`` imports nothing of ``vow.cli``.
- The pure parts — the promise state table (``coordinator/states.py``) and the generator driver
  (``worker/driver.py``) — reach no Redis client, however many modules away.
- Nothing anywhere (package, tests, bench, examples) imports the repository folders as top-level
  packages (``coordinator``, ``worker``, ``cli``): installed, they exist only under ``vow``.
- No module of the package is much over 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: the installed package name of each repository folder (pyproject.toml's package-dir)
FOLDERS = {"vow": ROOT / "vow", "vow.coordinator": ROOT / "coordinator", "vow.worker": ROOT / "worker",
           "vow.cli": ROOT / "cli"}
MAX_LINES = 520


def package_modules() -> dict[str, Path]:
    """Module name -> file, for every module of the installed package."""
    modules: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            if package == "vow" and parts and parts[0] in ("coordinator", "worker", "cli"):
                continue  # (a stray folder of that name under vow/ would be a mistake of its own)
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(name: str, path: Path) -> set[str]:
    """Every module name ``path`` imports, relative imports resolved against ``name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


MODULES = package_modules()
IMPORTS = {name: imports_of(name, path) for name, path in MODULES.items()}


def within(prefix: str) -> list[str]:
    return [m for m in MODULES if m == prefix or m.startswith(prefix + ".")]


def reaches(start: str) -> set[str]:
    """Every module (of the package or outside it) that importing ``start`` may import."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        current = stack.pop()
        for imported in IMPORTS.get(current, set()):
            if imported not in seen:
                seen.add(imported)
                if imported in MODULES:
                    stack.append(imported)
    return seen


@pytest.mark.parametrize(("part", "forbidden"), [
    ("vow.coordinator", ("vow.worker", "vow.cli", "vow.server", "vow.processes")),
    ("vow.worker", ("vow.cli",)),
])
def test_forbidden_edges(part: str, forbidden: tuple[str, ...]) -> None:
    bad = [(m, i) for m in within(part) for i in IMPORTS[m] if i.startswith(forbidden) or i == "vow"]
    assert not bad, f"{part} must not import {forbidden} (nor the vow root): {bad}"


@pytest.mark.parametrize("pure", ["vow.coordinator.states", "vow.worker.driver"])
def test_pure_parts_reach_no_redis(pure: str) -> None:
    assert pure in MODULES
    redis = sorted(i for i in reaches(pure) if i == "redis" or i.startswith("redis."))
    assert not redis, f"{pure} reaches {redis}"
    inner = sorted(i for i in reaches(pure) if i in ("vow.coordinator.store", "vow.coordinator.connection"))
    assert not inner, f"{pure} reaches the store: {inner}"


def test_the_checker_sees_a_forbidden_edge() -> None:
    assert "vow.coordinator.store" in reaches("vow.worker.loop")
    assert any(i.startswith("redis") for i in reaches("vow.coordinator.store"))


def test_nothing_imports_the_folders_as_top_level_packages() -> None:
    files = [p for d in ("vow", "coordinator", "worker", "cli", "tests", "bench", "examples")
             for p in (ROOT / d).rglob("*.py")]
    bad = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            top = [n for n in names if n.split(".")[0] in ("coordinator", "worker", "cli")]
            bad += [f"{path.relative_to(ROOT)}: {n}" for n in top]
    assert not bad, bad


def test_no_module_is_much_over_500_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by concern: {long}"
