"""The layout the README describes, checked from the source (ast), so that it stays true.

Layers, imports one way only (lowest first):

    0  ctr.errors ctr.spec ctr.process ctr.units        what every layer speaks
    1  ctr.native ctr.state ctr.images ctr.convert      kernel primitives, state, images,
       ctr.security                                     conversions, security options
    2  ctr.backends                                     the implementations
    3  ctr ctr.api ctr.transfer ctr.compare ctr.inspect  what works across backends
    4  ctr.cli                                          the commands

No module imports one of a higher layer, not even inside a function; modules of one
layer may import each other, but no import at module level closes a cycle. No module
takes another's _private name, imports are absolute, files stay under 600 lines and
functions under 80, and pyproject.toml names every package.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = {"ctr": "ctr", "ctr.cli": "cli", "ctr.backends": "backends", "ctr.native": "native"}
LAYERS = (
    ("ctr.errors", "ctr.spec", "ctr.process", "ctr.units"),
    ("ctr.native", "ctr.state", "ctr.images", "ctr.convert", "ctr.security"),
    ("ctr.backends",),
    ("ctr", "ctr.api", "ctr.transfer", "ctr.compare", "ctr.inspect"),
    ("ctr.cli",),
)
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Import:
    target: str  # the module imported (a package's submodule when one is named)
    names: tuple[str, ...]  # the names taken from it (from X import a, b)
    line: int
    top_level: bool  # executed when the module is imported (not in a function, not TYPE_CHECKING)
    relative: bool


def source_files() -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    modules = {}
    for package, directory in PACKAGE_DIRS.items():
        for path in sorted((ROOT / directory).rglob("*.py")):
            parts = list(path.relative_to(ROOT / directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            modules.setdefault(name, path)  # ctr/ holds ctr; cli/ is ctr.cli, not ctr/cli
    return modules


MODULES = source_files()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(alias.name, (), child.lineno, top, False))
            elif isinstance(child, ast.ImportFrom):
                module = child.module or ""
                names = tuple(a.name for a in child.names)
                submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
                if submodules:
                    found.extend(Import(m, (), child.lineno, top, bool(child.level)) for m in submodules)
                    names = tuple(n for n in names if f"{module}.{n}" not in MODULES)
                if names or not submodules:
                    found.append(Import(module, names, child.lineno, top, bool(child.level)))
            else:
                visit(child, top)

    visit(ast.parse(path.read_text(), str(path)), True)
    return found


IMPORTS = {name: imports_of(path) for name, path in MODULES.items()}


def layer(module: str) -> int | None:
    best, depth = None, -1
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = number, prefix.count(".")
    return best


def where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ROOT)}:{line}"


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if layer(m) is None]
    assert not missing, f"modules of no layer (add them to LAYERS): {missing}"


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, imports in IMPORTS.items():
        for imp in imports:
            if imp.target.startswith("ctr") and imp.target in MODULES or imp.target.split(".")[0] == "ctr":
                if (there := layer(imp.target)) is not None and there > layer(module):  # type: ignore[operator]
                    upward.append(
                        f"{where(module, imp.line)}: {module} (layer {layer(module)}) imports "
                        f"{imp.target} (layer {there})"
                    )
    assert not upward, "\n".join(upward)


def test_no_import_cycle_at_module_level():
    graph = {
        m: sorted({i.target for i in imps if i.top_level and i.target in MODULES and i.target != m})
        for m, imps in IMPORTS.items()
    }
    cycles, state = [], {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = "done"

    for module in graph:
        if module not in state:
            walk(module, [module])
    assert not cycles, "\n".join(cycles)


def test_no_private_name_of_another_module():
    taken = []
    for module, imports in IMPORTS.items():
        for imp in imports:
            if imp.target in MODULES and imp.target != module:
                taken += [
                    f"{where(module, imp.line)}: {imp.target}.{n}"
                    for n in imp.names
                    if n.startswith("_") and not n.startswith("__")
                ]
    assert not taken, "\n".join(taken)


def test_imports_are_absolute():
    relative = [where(m, i.line) for m, imps in IMPORTS.items() for i in imps if i.relative]
    assert not relative, "relative imports: " + ", ".join(relative)


def _python_files() -> list[Path]:
    dirs = [ROOT / d for d in (*PACKAGE_DIRS.values(), "tests", "bench", "examples", "scripts")]
    return sorted(p for d in dirs if d.is_dir() for p in d.rglob("*.py")) + [ROOT / "setup.py"]


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_file_is_short(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by concept"


def test_functions_are_short():
    long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "\n".join(long)


def test_pyproject_names_every_package():
    text = (ROOT / "pyproject.toml").read_text()
    declared = set(re.findall(r'"(ctr(?:\.[a-z_]+)*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert packages == declared
