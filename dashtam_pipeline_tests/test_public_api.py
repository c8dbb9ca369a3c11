"""No module of the project or its tests imports Dagster's private modules.

``dagster._core`` and the other underscore modules change between Dagster releases
without notice; everything the project needs has a public equivalent (``dagster``,
``dagster_graphql``, ``dagster_postgres``), and ``dashtam_pipeline/dagster_names.py``
holds the tag names Dagster documents but exports only privately.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dashtam_pipeline", "dashtam_pipeline_tests", "bench")


def _private(module: str) -> bool:
    """``dagster._core...``, ``dagster_graphql._x``, ...: any underscore part of a Dagster
    package's module path."""
    parts = module.split(".")
    return parts[0].startswith("dagster") and any(p.startswith("_") for p in parts[1:])


def private_dagster_imports() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(), filename=rel)
            for node in ast.walk(tree):
                modules: list[str] = []
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                    modules += [f"{node.module}.{a.name}" for a in node.names]
                for module in modules:
                    if _private(module):
                        found.append(f"{rel}:{node.lineno}: {module}")
    return found


def test_no_private_dagster_import() -> None:
    assert private_dagster_imports() == []


def test_the_check_sees_a_private_import() -> None:
    assert _private("dagster._core.storage.tags")
    assert _private("dagster_graphql._internal")
    assert not _private("dagster")
    assert not _private("dagster_graphql.client")
    assert not _private("dagster_postgres")
