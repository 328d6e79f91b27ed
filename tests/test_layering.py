"""The floors of the house: every import runs downwards,

    tools -> workflow -> data_prep -> landmarks (evaluate -> deploy -> runtime -> train -> nets
    -> conventions -> common),

and no two modules import each other, directly or round a circle. Read from the sources with
`ast` (imports inside functions count too), so a late import cannot hide an upward one.
"""
import ast

import pytest

from support import ROOT

# Lowest first. A module may import its own floor and the floors below it.
FLOORS = ("landmarks.common", "landmarks.conventions", "landmarks.nets", "landmarks.train", "landmarks.runtime",
          "landmarks.deploy", "landmarks.evaluate", "data_prep", "workflow", "tools")
PACKAGES = ("landmarks", "data_prep", "workflow", "tools")


def module_name(root, path):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def floor_of(module):
    """Index in FLOORS of the longest floor `module` is in; None for modules outside them."""
    best = None
    for index, floor in enumerate(FLOORS):
        if module == floor or module.startswith(floor + "."):
            if best is None or len(floor) > len(FLOORS[best]):
                best = index
    if best is None and module == "landmarks":  # the package's own __init__: the ground floor
        return 0
    return best


def imports_of(root, path, known):
    """(line, imported module) for every import in `path` of a module in `known` (packages
    imported as `from pkg import module` resolve to the module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(root, path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                found.append((node.lineno, name))
    return found


def import_graph(root):
    """{module: [(line, imported module)]} over the project's packages under `root`."""
    paths = [p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))]
    known = {module_name(root, p) for p in paths}
    return {module_name(root, p): (p, imports_of(root, p, known)) for p in paths}


def upward_imports(root):
    """'file:line: a imports b (floor x above floor y)' for each import that runs upwards."""
    problems = []
    for module, (path, imports) in import_graph(root).items():
        floor = floor_of(module)
        for line, name in imports:
            target = floor_of(name)
            if floor is not None and target is not None and target > floor:
                problems.append(f"{path.relative_to(root)}:{line}: {module} imports {name} "
                                f"({FLOORS[target]} is above {FLOORS[floor]})")
    return problems


def circles(root):
    """Each import circle among modules, as 'a -> b -> a' (depth-first search)."""
    graph = import_graph(root)
    edges = {m: sorted({n for _, n in imports if n in graph and n != m}) for m, (_, imports) in graph.items()}
    found, state, stack = [], {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in edges[module]:
            if state.get(target) == "open":
                found.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module)
    return found


def test_every_import_runs_downwards():
    assert upward_imports(ROOT) == []


def test_no_module_imports_round_a_circle():
    assert circles(ROOT) == []


def test_every_project_module_is_on_a_floor():
    assert [m for m in import_graph(ROOT) if floor_of(m) is None] == []


def _tree(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    return tmp_path


@pytest.mark.parametrize("source", ["from workflow import runs\n",
                                    "def late():\n    from data_prep import dataset\n",
                                    "import tools.run\n",
                                    "from landmarks.evaluate import timing\n"])
def test_the_checker_catches_an_upward_import(tmp_path, source):
    root = _tree(tmp_path, {"landmarks/__init__.py": "", "landmarks/runtime/__init__.py": "",
                            "landmarks/runtime/inference.py": source, "landmarks/evaluate/__init__.py": "",
                            "landmarks/evaluate/timing.py": "", "workflow/__init__.py": "", "workflow/runs.py": "",
                            "data_prep/__init__.py": "", "data_prep/dataset.py": "", "tools/run.py": ""})
    problems = upward_imports(root)
    assert len(problems) == 1 and problems[0].startswith("landmarks/runtime/inference.py:")


def test_the_checker_allows_downward_and_sideways_imports(tmp_path):
    root = _tree(tmp_path, {"landmarks/__init__.py": "", "landmarks/common/__init__.py": "",
                            "landmarks/common/atomic.py": "", "data_prep/__init__.py": "",
                            "data_prep/dataset.py": "from landmarks.common import atomic\n",
                            "data_prep/celeba.py": "from data_prep.dataset import Entry\n",
                            "workflow/__init__.py": "", "tools/run.py": "from workflow import stages\n"})
    assert upward_imports(root) == []


def test_the_checker_finds_a_circle(tmp_path):
    root = _tree(tmp_path, {"data_prep/__init__.py": "", "data_prep/dataset.py": "from data_prep import celeba\n",
                            "data_prep/celeba.py": "def f():\n    from data_prep.dataset import Entry\n"})
    assert circles(root) == ["data_prep.celeba -> data_prep.dataset -> data_prep.celeba"]
