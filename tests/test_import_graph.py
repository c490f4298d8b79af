"""The package's import graph: no cycle, and no import from a lower floor to a higher one.

Every ``import`` and ``from ... import`` in the package's source counts, also those inside
functions (a lazy import is still a dependency). The floors, bottom first, are in
ARCHITECTURE.md; a module may import its own floor and the ones below.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_lightnets"

# Bottom first. A module belongs to the floor of the longest prefix naming it.
FLOORS = (
    ("foundations", ("errors", "files", "validation", "_backend", "_version")),
    ("Keras basics", ("layers", "layout", "macs", "imagenet", "models.features")),
    ("models and weights", ("weights", "models", "detection")),
    ("compression, export, data, training", ("compression", "export", "data", "model_files", "training")),
    ("pipelines", ("pipelines",)),
    ("command line", ("cli", "__main__")),
    # The public face: the package itself, keras.applications-style family modules, legacy.
    ("public", ("", "legacy", "efficientnet_lite", "ghostnet", "mnasnet", "mobilenet", "mobilenet_v2",
                "mobilenet_v3", "mobilenet_v4", "nasnet", "shufflenet_v1",
                "shufflenet_v2", "squeezenet")),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports (``from package import module`` names the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "keras_lightnets":
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "keras_lightnets")
    return {module for module in found if module in modules and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def floor_of(module: str) -> int:
    relative = module.removeprefix("keras_lightnets").removeprefix(".")
    best, length = None, -1
    for level, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (relative == prefix or relative.startswith(prefix + ".") if prefix else relative == "") \
                    and len(prefix) > length:
                best, length = level, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS here and to ARCHITECTURE.md")
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_every_module_is_on_a_floor():
    for module in _modules():
        floor_of(module)


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_no_import_from_a_lower_floor_to_a_higher_one():
    upward = [
        f"{module} ({FLOORS[floor_of(module)][0]}) imports {other} ({FLOORS[floor_of(other)][0]})"
        for module, imported in sorted(_graph().items()) for other in sorted(imported)
        if floor_of(other) > floor_of(module)
    ]
    assert upward == []


@pytest.mark.parametrize("module, imported, expected", [
    ("keras_lightnets.a", "keras_lightnets.b", [["keras_lightnets.a", "keras_lightnets.b"]]),
    ("keras_lightnets.a", "keras_lightnets.c", []),
])
def test_the_cycle_finder_finds_a_two_module_cycle(module, imported, expected):
    graph = {"keras_lightnets.a": {imported}, "keras_lightnets.b": {"keras_lightnets.a"}, "keras_lightnets.c": set()}
    assert _cycles(graph) == expected


def test_the_floor_check_sees_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    package = tmp_path / "keras_lightnets"
    (package / "cli").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli" / "__init__.py").write_text("")
    (package / "files.py").write_text("def f():\n    from keras_lightnets.cli import main\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    graph = _graph()
    assert graph["keras_lightnets.files"] == {"keras_lightnets.cli"}
    assert floor_of("keras_lightnets.cli") > floor_of("keras_lightnets.files")


def test_every_package_folder_ships_in_the_wheel():
    """setup.cfg lists packages by hand: a sub-package missing there is missing from the wheel
    (an editable install hides it)."""
    import configparser

    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    listed = {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}
    found = {_module_name(path.parent / "__init__.py") for path in PACKAGE.rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
