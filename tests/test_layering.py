"""The module graph: data flows one way, so imports do too.

Every import a module can execute counts, function-level ones included (they hide a cycle,
they do not remove it). Imports under ``if TYPE_CHECKING:`` only name types for the checker
and never run, so they do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmpipe"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path, modules: set[str] | None = None) -> set[str]:
    """The mmpipe modules ``path`` may import when it runs (every module: ``modules=None``)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and ast.unparse(test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                # `from pkg import module` depends on that module; `from m import name` on m.
                sub = f"{node.module}.{alias.name}"
                found.add(sub if modules is not None and sub in modules else node.module)
    return found if modules is None else {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: runtime_imports(path, modules) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_is_read_from_the_source() -> None:
    graph = import_graph()
    assert "mmpipe.engine" in graph["mmpipe.steps"]
    assert "mmpipe.errors" in graph["mmpipe.io.dataset"]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    ("layer", "must_not_import"),
    [
        ("mmpipe.io", ("mmpipe.engine", "mmpipe.steps", "mmpipe.stats", "mmpipe.models")),
        ("mmpipe.stats", ("mmpipe.engine", "mmpipe.steps", "mmpipe.cli")),
        ("mmpipe.models", ("mmpipe.engine", "mmpipe.steps", "mmpipe.cli")),
    ],
)
def test_lower_layers_do_not_import_higher_ones(
    layer: str, must_not_import: tuple[str, ...]
) -> None:
    graph = import_graph()
    for module, imports in graph.items():
        if module == layer or module.startswith(layer + "."):
            bad = sorted(i for i in imports if i.startswith(must_not_import))
            assert not bad, f"{module} imports {bad}"


def test_the_library_never_imports_its_orchestration() -> None:
    flows = Path(__file__).resolve().parents[1] / "flows"
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] in ("flows", "prefect") for n in names), path
    assert (flows / "pipeline.py").exists()


def _external_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_dask_passes_live_in_one_package() -> None:
    # The models are numerics on in-memory arrays; every pass over the data (a Dask graph
    # computed on the run's client) is in mmpipe.stats (and the dataset writer in mmpipe.io).
    for path in (PACKAGE / "models").rglob("*.py"):
        bad = sorted(
            n
            for n in _external_imports(path)
            if n.split(".")[0] in ("dask", "distributed") or n.startswith("mmpipe.cluster")
        )
        assert not bad, f"{path.name} imports {bad}"
    computing = {
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if "compute_pass(" in path.read_text() or "persist_pass(" in path.read_text()
    }
    outside = sorted(
        m for m in computing if not m.startswith(("mmpipe.stats", "mmpipe.io", "mmpipe.cluster"))
    )
    assert not outside, f"passes computed outside mmpipe.stats: {outside}"
    assert "mmpipe.stats.blocked" in computing  # the check reads the source it claims to


def test_flows_use_only_the_public_step_api() -> None:
    flows = Path(__file__).resolve().parents[1] / "flows"
    internal = ("mmpipe.engine", "mmpipe.stats", "mmpipe.models", "mmpipe.tasks")
    for path in flows.rglob("*.py"):
        bad = sorted(n for n in _external_imports(path) if n.startswith(internal))
        assert not bad, f"flows/{path.name} imports {bad}"


def test_zarr_private_api_is_used_in_one_module() -> None:
    for path in PACKAGE.rglob("*.py"):
        private = sorted(n for n in runtime_imports(path) if n.startswith("zarr.core"))
        if module_name(path) == "mmpipe.io.zarr_private":
            assert private  # the check sees the imports it is about
            continue
        assert not private, f"{module_name(path)} imports zarr's private {private}"
