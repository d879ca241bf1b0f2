"""The import graph has no cycle, between modules or between packages (issues 15 and 31).

Graphs are built from the source with `ast` (nothing is imported):
  * module level: every import that runs when a module is imported, including those under
    `if TYPE_CHECKING:` (a type checker follows them) and inside class bodies;
  * all imports: the same plus the imports inside functions (deferred imports, used for heavy
    libraries and for work done only on demand). A cycle there is not an import-time error, but it
    is the same tangle of responsibilities, so it is refused as well, with no exception: the
    registries hold entries and never load them (the entry points call bench.plugins);
  * packages: all imports with every module of a package of bench (bench.data, bench.train, ...)
    as one node, a module at bench's top level (bench.config, bench.run, ...) as a node of its
    own, and the methods package as one node, so the layers cannot lean on each other either.
Importing `a.b.c` from outside package `a.b` also runs `a/b/__init__.py`, so that counts as an
import of the package too.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "methods")


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def import_graph(root: Path = ROOT, deferred: bool = False) -> dict[str, set[str]]:
    """module -> the package modules it imports (at module level; with `deferred`, in functions
    too)."""
    mods = modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        is_package = path.name == "__init__.py"

        def add(target: str | None) -> None:
            if target is None or target == module:
                return
            graph[module].add(target)
            parent = target.rpartition(".")[0]
            own_package = module if is_package else module.rpartition(".")[0]
            while parent in mods and not (own_package + ".").startswith(parent + "."):
                graph[module].add(parent)
                parent = parent.rpartition(".")[0]

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inside = in_function or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                counted = not in_function or deferred
                if isinstance(child, ast.Import) and counted:
                    for alias in child.names:
                        add(resolve(alias.name))
                elif isinstance(child, ast.ImportFrom) and counted and child.module \
                        and child.level == 0:
                    for alias in child.names:
                        add(resolve(f"{child.module}.{alias.name}"))
                visit(child, inside)

        visit(ast.parse(path.read_text(), str(path)), False)
    return graph


def package_of(module: str) -> str:
    """A module's node in the package graph: bench.<package> for the modules of a package of
    bench, the module itself at bench's top level, the top package elsewhere (methods)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bench" else parts[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, targets in graph.items():
        node = package_of(module)
        out.setdefault(node, set()).update(package_of(t) for t in targets
                                           if package_of(t) != node)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_module_level_imports_have_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle at module level: " + " -> ".join(cycle)


def test_imports_including_deferred_ones_have_no_cycle():
    cycle = find_cycle(import_graph(deferred=True))
    assert cycle is None, "import cycle (deferred imports included): " + " -> ".join(cycle)


def test_packages_have_no_cycle():
    cycle = find_cycle(package_graph(import_graph(deferred=True)))
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def test_registries_load_nothing():
    """The catalog's registries import only the Registry type (issue 31): filling them is the
    entry points' job, so a lookup never imports the modules that register into them."""
    graph = import_graph(deferred=True)
    assert graph["bench.catalog"] == {"bench.registry"}
    assert graph["bench.registry"] == set()


def test_the_walk_sees_cycles(tmp_path):
    """The checker itself: a deferred cycle and a TYPE_CHECKING one are found, a clean tree is
    not flagged, and a submodule import counts as an import of its package."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "bench" / "a.py").write_text("def f():\n    from bench import b\n")
    (tmp_path / "bench" / "b.py").write_text("from bench.c import x\n")
    (tmp_path / "bench" / "c.py").write_text("x = 1\n")
    assert find_cycle(import_graph(tmp_path)) is None
    assert find_cycle(import_graph(tmp_path, deferred=True)) is None
    (tmp_path / "bench" / "c.py").write_text("import bench.a\n")
    assert find_cycle(import_graph(tmp_path)) is None  # a -> b only inside a function
    assert find_cycle(import_graph(tmp_path, deferred=True)) == \
        ["bench.a", "bench.b", "bench.c", "bench.a"]
    (tmp_path / "bench" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bench.b import y\n")
    assert find_cycle(import_graph(tmp_path)) == ["bench.b", "bench.c", "bench.b"]
    (tmp_path / "bench" / "c.py").write_text("x = 1\n")
    (tmp_path / "bench" / "pkg").mkdir()
    (tmp_path / "bench" / "pkg" / "__init__.py").write_text("from bench.pkg.inner import z\n")
    (tmp_path / "bench" / "pkg" / "inner.py").write_text("from bench.pkg.other import w\n")
    (tmp_path / "bench" / "pkg" / "other.py").write_text("w = 1\n")
    assert find_cycle(import_graph(tmp_path)) is None  # a package importing its own parts
    (tmp_path / "bench" / "pkg" / "other.py").write_text("from bench.c import x\n")
    (tmp_path / "bench" / "c.py").write_text("from bench.pkg.other import w\n")
    cycle = find_cycle(import_graph(tmp_path))
    assert cycle is not None and cycle[0] == cycle[-1] == "bench.c" and "bench.pkg.other" in cycle
    (tmp_path / "bench" / "pkg" / "other.py").write_text("w = 1\n")
    (tmp_path / "bench" / "pkg" / "inner.py").write_text("from bench.c import x\n")
    assert find_cycle(import_graph(tmp_path)) == \
        ["bench.c", "bench.pkg", "bench.pkg.inner", "bench.c"]
    # no module cycle, but two packages leaning on each other
    (tmp_path / "bench" / "pkg" / "__init__.py").write_text("")
    (tmp_path / "bench" / "pkg" / "inner.py").write_text("from bench.other.x import v\n")
    (tmp_path / "bench" / "other").mkdir()
    (tmp_path / "bench" / "other" / "__init__.py").write_text("")
    (tmp_path / "bench" / "other" / "x.py").write_text("v = 1\n")
    (tmp_path / "bench" / "other" / "y.py").write_text("def f():\n    from bench.pkg import z\n")
    assert find_cycle(import_graph(tmp_path, deferred=True)) is None
    cycle = find_cycle(package_graph(import_graph(tmp_path, deferred=True)))
    assert cycle is not None and set(cycle) == {"bench.other", "bench.pkg"}


def test_a_config_validates_once_the_builtins_are_loaded():
    """Importing bench.config imports neither torch nor a method. A lookup in the empty
    registries says, in one line, how to load the built-ins; after that one explicit call a
    RunConfig validates, and an unknown name lists the valid ones."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import bench.config, bench.catalog\n"
            "assert 'torch' not in sys.modules and 'methods' not in sys.modules, 'eager import'\n"
            "from bench.config import RunConfig\n"
            "try:\n"
            "    RunConfig(method='COLT', dataset='digits')\n"
            "except ValueError as exc:\n"
            "    print(exc)\n"
            "assert 'torch' not in sys.modules and 'methods' not in sys.modules, 'lookup loaded'\n"
            "from bench.plugins import load_builtins\n"
            "load_builtins()\n"
            "cfg = RunConfig(method='COLT', dataset='digits', options=(('prune_fraction', 0.2),))\n"
            "print(cfg.method, cfg.label, 'torch' in sys.modules)\n"
            "try:\n"
            "    RunConfig(method='nope')\n"
            "except ValueError as exc:\n"
            "    print(exc)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    empty, first, second = res.stdout.splitlines()
    assert empty.startswith("unknown method 'COLT': no method is registered in this process; ")
    assert "bench.plugins.load_builtins()" in empty
    assert first.startswith("colt colt") and first.endswith("True")
    assert second.startswith("unknown method 'nope'; valid: ") and "tg-oneshot" in second
