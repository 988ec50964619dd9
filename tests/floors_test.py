"""The floor plan (ARCHITECTURE.md): imports run only downward, so a lower package never needs a higher one.

    benchmarks/  >  tuning/  >  tasks/, pages/  >  twins/  >  models/  >  datasets/  >  common/

Read from the source with `ast` (every import, also those inside functions), so a late import that climbs a
floor fails here as well as a top-level one.
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
