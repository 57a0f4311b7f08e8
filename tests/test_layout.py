"""The architecture, checked: the library never loads the benchmark application, the application uses only
the library's public API, and the library's modules import one another without circles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module or name ``path`` imports (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def test_importing_the_library_loads_no_benchmark_code_and_no_matplotlib() -> None:
    code = (
        "import layerwise, sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('layerwise_bench', 'matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_library_never_imports_the_application() -> None:
    offenders = {
        str(p.relative_to(SRC)): sorted(i for i in _imports(p) if i.split(".")[0] == "layerwise_bench")
        for p in (SRC / "layerwise").rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_application_uses_only_the_public_api() -> None:
    private = {}
    for p in (SRC / "layerwise_bench").rglob("*.py"):
        bad = sorted(
            i
            for i in _imports(p)
            if i.split(".")[0] == "layerwise"
            and any(part.startswith("_") and part != "__version__" for part in i.split(".")[1:])
        )
        if bad:
            private[str(p.relative_to(SRC))] = bad
    assert not private


def _cycles(package: str) -> list[list[str]]:
    files = {_module_name(p): p for p in (SRC / package).rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_in_the_library() -> None:
    assert _cycles("layerwise") == []


def test_no_import_circle_in_the_application() -> None:
    assert _cycles("layerwise_bench") == []


# What each part of the application may import: core and workloads are the protocol (no family, no method);
# methods build on core; a benchmark family uses core, methods and workloads, never another family.
_BENCH_ALLOWED = {
    "core": {"core", "workloads"},
    "workloads": {"workloads"},
    "methods": {"core", "methods"},
    **{f: {"core", "methods", "workloads", f} for f in ("autoencoder", "deep_mlp", "exits", "timing", "systems")},
}


def test_benchmark_families_import_only_core_methods_and_workloads() -> None:
    bench = SRC / "layerwise_bench"
    assert {p.name for p in bench.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == {*_BENCH_ALLOWED, "cli"}
    offenders = {}
    for part, allowed in _BENCH_ALLOWED.items():
        for p in (bench / part).rglob("*.py"):
            bad = sorted(
                i for i in _imports(p) if i.startswith("layerwise_bench") and (i.split(".") + [""])[1] not in allowed
            )
            if bad:
                offenders[str(p.relative_to(SRC))] = bad
    assert not offenders
