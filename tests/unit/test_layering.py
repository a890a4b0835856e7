"""The shape of the code, checked: dependencies point one way (workers -> dispatcher ->
providers), a provider lives in its own package, and every module says what it offers
in ``__all__``, exactly."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import dispatcher
from dispatcher.providers.registry import PROVIDERS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dispatcher"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (function bodies too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = sorted(PACKAGE.rglob("*.py"))


def importers_of(prefix: str) -> list[str]:
    return [
        module_name(path)
        for path in SOURCES
        if any(m == prefix or m.startswith(prefix + ".") for m in imported_modules(path))
    ]


def test_the_dispatcher_never_imports_the_workers() -> None:
    assert importers_of("workers") == []


def test_only_the_commands_that_start_them_import_the_sandbox_and_the_bench() -> None:
    for tool in ("sandbox", "bench"):
        outside = [
            name
            for name in importers_of(f"dispatcher.{tool}")
            if not name.startswith(f"dispatcher.{tool}")
        ]
        assert outside == [f"dispatcher.cli.{tool}"], tool


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_provider_package_is_imported_only_by_itself_its_sandbox_and_the_registry(
    provider: str,
) -> None:
    allowed = {"dispatcher.providers.registry", f"dispatcher.sandbox.{provider}"}
    importers = [
        name
        for name in importers_of(f"dispatcher.providers.{provider}")
        if not name.startswith(f"dispatcher.providers.{provider}")
    ]
    assert set(importers) <= allowed


def test_serving_the_api_and_running_the_workers_loads_neither_sandbox_nor_bench() -> None:
    probe = (
        "import sys, dispatcher.api, workers.app, workers.tasks\n"
        "print(sorted(m for m in sys.modules if m.startswith(('dispatcher.sandbox', "
        "'dispatcher.bench'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert loaded == "[]"


def modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(dispatcher.__path__, "dispatcher.")
        if not info.name.endswith("__main__")
    )


@pytest.mark.parametrize("name", modules())
def test_a_modules_public_names_are_its_all(name: str) -> None:
    module = importlib.import_module(name)
    defined = {
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == name
    }
    exported = getattr(module, "__all__", None)
    if exported is None:
        assert defined == set(), f"{name} defines public names but has no __all__"
        return
    assert [n for n in exported if not hasattr(module, n)] == [], "listed but missing"
    assert sorted(defined - set(exported)) == [], "public but not listed"


def test_the_package_offers_the_http_client_and_nothing_else() -> None:
    from dispatcher import client

    own = {
        name
        for name, value in vars(dispatcher).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert own - set(client.__all__) == set()
    assert set(dispatcher.__all__) == set(client.__all__)
    assert all(getattr(dispatcher, name) is getattr(client, name) for name in client.__all__)
    # and only on first use: a worker or the API importing the package does not load it
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, dispatcher; print('dispatcher.client' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"


CITATION = re.compile(r"(?<![\w/.-])((?:docs|config)/[\w./-]*\w|[\w./-]*\w\.md)\b")


def test_the_code_and_readme_cite_only_files_in_the_repository() -> None:
    names = {path.name for path in ROOT.rglob("*") if ".venv" not in path.parts}
    texts = [*SOURCES, *(ROOT / "config").rglob("*"), *(ROOT / "workers").rglob("*.py")]
    missing = set()
    for path in [ROOT / "README.md", *texts]:
        if path.is_dir() or path.suffix not in {".py", ".md", ".toml"}:
            continue
        for cited in CITATION.findall(path.read_text()):
            found = (ROOT / cited).exists() if "/" in cited else cited in names
            if not found:
                missing.add(f"{path.relative_to(ROOT)}: {cited}")
    assert sorted(missing) == []
