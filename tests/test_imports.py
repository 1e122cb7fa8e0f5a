"""The package's imports go one way (issues 25 and 26): no module imports, directly or
through others, a module that imports it back, and the Spark library never imports the
command line. Every import statement counts, those inside functions too: a lazy import is
still a dependency a reader has to follow."""
import ast
from pathlib import Path
from typing import Dict, List, Set

import spacy_crf_ner

ROOT = Path(spacy_crf_ner.__file__).parent
PACKAGE = "spacy_crf_ner"


def module_files() -> Dict[str, Path]:
    files = {}
    for path in ROOT.rglob("*.py"):
        parts = [PACKAGE] + list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def imported(module: str, path: Path, known: Dict[str, Path]) -> Set[str]:
    """The package's modules that ``module`` imports (a package importing its own
    submodules, or a module its own package, is not a dependency between modules)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target
                     for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + ".") \
                    and not name.startswith(module + "."):
                found.add(name)
    return found


def import_graph() -> Dict[str, Set[str]]:
    known = module_files()
    return {module: imported(module, path, known) for module, path in known.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_sees_known_imports():
    graph = import_graph()
    builder = graph["spacy_crf_ner.transformer.windowed_model"]
    assert "spacy_crf_ner.transformer.model_class" in builder
    assert "spacy_crf_ner.data.reader" in graph["spacy_crf_ner.cli.inputs"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    circles = cycles(import_graph())
    assert not circles, "modules that import each other: " + "; ".join(
        " <-> ".join(c) for c in circles)


def test_spark_library_never_imports_the_command_line():
    graph = import_graph()
    offenders = {module: sorted(t for t in targets if t.startswith(f"{PACKAGE}.cli"))
                 for module, targets in graph.items() if module.startswith(f"{PACKAGE}.spark")}
    assert not any(offenders.values()), offenders
