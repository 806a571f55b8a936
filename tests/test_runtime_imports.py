"""Every package the product imports is a runtime dependency: the recorder image installs only
those (`pip install .`), so a module importing a test-only package (numpy, once) crashed every
recorder pod at start-up while all tests on the test machine passed."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "operator" / "webrecord").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"webrecord", "__future__"}


def _dist(requirement: str) -> str:
    """The distribution a requirement line names ("pydantic>=2.6" -> "pydantic")."""
    return _normal(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])


def test_every_imported_package_is_a_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_dist(dep) for dep in project["dependencies"]}
    # Test-only: named by an extra and not by the runtime dependencies. A package installed as
    # a dependency of a declared one (botocore of boto3, yarl of aiohttp) is not test-only.
    test_only = {_dist(dep) for deps in project.get("optional-dependencies", {}).values()
                 for dep in deps} - declared
    owners = packages_distributions()
    missing = {}
    for module in sorted(_imported_top_levels()):
        dists = {_normal(d) for d in owners.get(module, [module])}
        if not dists & declared and dists & test_only:
            missing[module] = sorted(dists)
    assert not missing, f"imported by operator/webrecord but only a test extra: {missing}"
