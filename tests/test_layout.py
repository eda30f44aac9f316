"""The house's shape, checked on the source (imports inside functions included): no import
cycle among app's modules nor among its rooms (app's packages and top-level modules); every
arrow between rooms runs down the floors drawn below; the engines know no database and no
settings; and torch, transformers, triton and xgrammar are imported only by the local
engine's runtime (app/engines/local/), so the app and the CLI start without them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"
GPU_LIBRARIES = {"torch", "transformers", "triton", "xgrammar"}

# The house, bottom floor first: a room imports only rooms on floors below its own. Drawn from
# the imports: what knows nothing of the app, the rows, what the rows hold, the libraries that
# work on them (engines take images and return captions; datasets and images keep the rows),
# what makes jobs and files of them, the trainer that runs on an export, and the doors.
FLOORS: list[set[str]] = [
    {"app.errors", "app.config", "app.gpu"},
    {"app.models"},
    {"app.db", "app.captions"},
    {"app.engines", "app.datasets"},
    {"app.images"},
    {"app.drafting", "app.export"},
    {"app.training"},
    {"app.web"},
    {"app.cli"},
    {"app.__main__"},
]
# Nothing of the database or the settings in the engines: they take inputs, return outputs.
ENGINES_NEVER_IMPORT = ("app.db", "app.models", "app.config", "sqlmodel", "sqlalchemy")


def _module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else ""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in APP.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _room(module: str) -> str:
    """The package or top-level module of app that `module` is in."""
    return ".".join(module.split(".")[:2])


def _rooms(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The arrows between rooms; `from app import x` is an arrow to app.x, not to app."""
    rooms: dict[str, set[str]] = {}
    for module, imported in graph.items():
        if module == "app":
            continue
        room = rooms.setdefault(_room(module), set())
        room.update(_room(m) for m in imported if m != "app" and _room(m) != _room(module))
    return rooms


def _uphill(rooms: dict[str, set[str]], floors: list[set[str]]) -> list[str]:
    """Each arrow that does not run down to a lower floor, and each room on no floor."""
    floor = {room: i for i, on in enumerate(floors) for room in on}
    wrong = [f"{room} is on no floor" for room in sorted(rooms) if room not in floor]
    for room, imported in sorted(rooms.items()):
        for other in sorted(imported):
            if room in floor and other in floor and floor[other] >= floor[room]:
                wrong.append(f"{room} (floor {floor[room]}) -> {other} (floor {floor[other]})")
    return wrong


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_app_has_no_import_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_app_s_rooms_have_no_import_cycle() -> None:
    # Modules can avoid a cycle while their packages make one (a.x -> b.y -> a.z).
    cycle = _cycle(_rooms(_graph()))
    assert cycle is None, " -> ".join(cycle or [])


def test_every_arrow_runs_down_the_floors() -> None:
    assert _uphill(_rooms(_graph()), FLOORS) == []


def test_the_floors_checker_finds_an_arrow_up_and_a_room_on_no_floor() -> None:
    rooms = {"app.a": {"app.b"}, "app.b": {"app.a"}, "app.c": set()}
    assert _uphill(rooms, [{"app.a"}, {"app.b"}]) == [
        "app.c is on no floor",
        "app.a (floor 0) -> app.b (floor 1)",
    ]
    assert _rooms({"app.x.m": {"app.y.n", "app.x.k", "app"}, "app.x.k": set()}) == {
        "app.x": {"app.y"}
    }


@pytest.mark.parametrize(
    "path", sorted((APP / "engines").rglob("*.py")), ids=lambda p: str(p.relative_to(APP))
)
def test_engines_know_no_database_and_no_settings(path: Path) -> None:
    known = {
        m for m in _imports(path) for n in ENGINES_NEVER_IMPORT if m == n or m.startswith(f"{n}.")
    }
    assert not known, f"{path.relative_to(APP)} imports {sorted(known)}"


def test_cycle_finder_finds_a_cycle() -> None:
    # The check above would pass on anything if the finder were broken.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", sorted(APP.rglob("*.py")), ids=lambda p: str(p.relative_to(APP)))
def test_gpu_libraries_are_imported_only_by_the_local_runtime(path: Path) -> None:
    if (APP / "engines" / "local") in path.parents:
        return
    heavy = {m for m in _imports(path) if m.split(".")[0] in GPU_LIBRARIES}
    assert not heavy, f"{path.relative_to(APP)} imports {sorted(heavy)}"


@pytest.mark.parametrize(
    ("what", "words", "home"),
    [
        # The GPU probe: nvidia-smi and the driver, asked in one module (the engine's runtime,
        # which has torch loaded, asks torch).
        ("GPU probe", ("nvidia-smi", "/proc/driver/nvidia", "cuda.is_available"), "gpu.py"),
        # The sentence pages show when drafting would run on the CPU, decided in one function.
        ("CPU-drafting warning", ("CPU_WARNING", "runs_on_cpu("), "drafting/available.py"),
    ],
)
def test_one_rule_lives_in_one_place(what: str, words: tuple[str, ...], home: str) -> None:
    found = {
        str(path.relative_to(APP))
        for path in APP.rglob("*.py")
        if (APP / "engines" / "local") not in path.parents
        and any(word in path.read_text() for word in words)
    }
    assert found == {home}, f"the {what} is in {sorted(found)}"


@pytest.mark.parametrize(
    ("module", "function"),
    [("app.export.writer", "export_dataset"), ("app.export.lint", "lint_dataset")],
)
def test_the_long_loops_read_as_their_phases(module: str, function: str) -> None:
    # export_dataset calls its phases (check, place, stage, publish) and lint_dataset runs its
    # table of rules: each fits a screen, the phases and rules named beside it.
    import importlib
    import inspect

    lines = inspect.getsource(getattr(importlib.import_module(module), function)).splitlines()
    assert len(lines) <= 60, f"{function} is {len(lines)} lines"


def test_an_engine_s_optional_abilities_are_declared_not_probed() -> None:
    # Declared with their defaults on the interface; callers call them on any engine.
    from app.engines.interface import Engine

    for ability in ("prefetch", "new_job", "server_stats", "leave_one_core"):
        assert ability in vars(Engine), ability
    probes = {
        str(path.relative_to(APP))
        for path in APP.rglob("*.py")
        if re.search(r"getattr\((self\._)?engine\b", path.read_text())
    }
    assert probes == set()
