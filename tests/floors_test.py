"""The floor plan (ARCHITECTURE.md): imports run only downward, so a lower package never needs a higher one.

    benchmarks/  >  tuning/  >  tasks/, pages/  >  twins/  >  models/  >  datasets/  >  common/

Read from the source with `ast` (every import, also those inside functions), so a late import that climbs a
floor fails here as well as a top-level one. Within a floor, the modules' imports form no circle either: each
module can be read (and tested) after the ones it imports, never needing one that needs it back. And the
machine is asked what it has in one place only, common/hardware.py.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"common": 0, "datasets": 1, "models": 2, "twins": 3, "tasks": 4, "pages": 4, "tuning": 5,
          "benchmarks": 6}


def imported_packages(path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_imports_only_run_downward():
    climbing = []
    for package, floor in FLOORS.items():
        for path in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else []:
            for target in imported_packages(path):
                if FLOORS.get(target, -1) > floor:
                    climbing.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not climbing, climbing


def test_the_floor_plan_names_every_package():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages <= set(FLOORS), packages - set(FLOORS)


# ------------------------------------------------------------------------------------------------ no circles
def own_modules():
    """{dotted name: path} of the repo's own modules: every package of the floor plan and the scripts at the
    top (run_all.py); a package is its __init__.py."""
    paths = [path for package in FLOORS if (ROOT / package).is_dir()
             for path in sorted((ROOT / package).rglob("*.py"))]
    modules = {}
    for path in paths + sorted(ROOT.glob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name, path, modules):
    """The repo's own modules that the module `name` imports anywhere in its source, resolved to modules:
    `from common import console` is common.console (a module), `from common.cli import run` is common.cli,
    `from models import build_fnn` is the package models (its __init__.py)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .sibling import y
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                found.add(submodule if submodule in modules else base)
    return {target for target in found if target in modules and target != name}


def import_graph():
    modules = own_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def circles(graph):
    """One circle of imports for every group of modules that import each other (strongly connected
    components, Tarjan), each as a list of modules that starts and ends with the same one."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle_in(graph, group) for group in groups]


def _circle_in(graph, group):
    """A shortest circle through the first module of `group` (breadth first, inside the group)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    return paths[node] + [start]
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no circle in the group {sorted(group)}")


def test_no_module_imports_itself_back_through_others():
    found = [" -> ".join(circle) for circle in circles(import_graph())]  # one circle per tangled group
    assert not found, "import circles (move the shared piece down to a leaf module): " + "; ".join(found)


def test_the_graph_resolves_a_module_imported_from_its_package():
    graph = import_graph()
    assert "common.console" in graph["common.cli"]  # from common import console
    assert "common.errors" in graph["common.cli"]  # from common.errors import run_cli
    assert "models" in graph["tasks.phone_price"]  # from models import build_fnn, ...: the package itself


def test_the_circle_finder_names_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert circles(graph) == [["a", "b", "c", "a"]]  # a module importing itself is no circle of modules
    assert circles({"a": {"b"}, "b": set()}) == []


# ---------------------------------------------------------------------------------------- one hardware module
HARDWARE = "common/hardware.py"
# What reading the machine looks like: a call of one of these names, or the file the Linux kernel describes
# the CPU in.
PROBE_CALLS = {"list_physical_devices", "cpu_count", "sched_getaffinity", "get_device_details",
               "device_count", "get_device_name"}
PROBE_FILES = ("/proc/cpuinfo", "lscpu")


def probes(path):
    """(line, what) for every place in `path` that asks the machine what it has, docstrings aside."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PROBE_CALLS:
            yield node.lineno, node.attr
        elif (isinstance(node, ast.Attribute) and node.attr == "devices" and isinstance(node.value, ast.Name)
              and node.value.id == "jax"):
            yield node.lineno, "jax.devices"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield from ((node.lineno, file) for file in PROBE_FILES if file in node.value)


def test_only_common_hardware_asks_the_machine_what_it_has():
    found = [f"{path.relative_to(ROOT)}:{line} ({what})"
             for path in own_modules().values() if path.relative_to(ROOT).as_posix() != HARDWARE
             for line, what in probes(path)]
    assert not found, f"ask {HARDWARE} instead: " + ", ".join(found)


def test_the_probe_finder_finds_the_probes_of_common_hardware():
    found = {what for _, what in probes(ROOT / HARDWARE)}
    assert {"/proc/cpuinfo", "list_physical_devices", "cpu_count", "sched_getaffinity", "jax.devices",
            "device_count"} <= found
