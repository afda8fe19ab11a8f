"""The layers' arrows point inward: every import in ``src/ehrbridge`` (top-level, inside a
function or under ``TYPE_CHECKING``) is checked against the rules below."""

from __future__ import annotations

import ast
from pathlib import Path

import ehrbridge

SRC = Path(ehrbridge.__file__).parent

#: what the world model may import besides itself: the base modules
WORLDMODEL_MAY_IMPORT = ("errors", "confidence", "times", "leases", "audit", "worldmodel")
#: what the review layer may import besides itself: the base modules, the world model and FHIR
REVIEW_MAY_IMPORT = (*WORLDMODEL_MAY_IMPORT, "fhir", "review")
#: what the outbound layer may import: the layers before it, the shared HTTP helpers and the
#: request budgets (base modules that import only ``errors``; a sink's budget is ``sink:<id>``)
OUTBOUND_MAY_IMPORT = (*REVIEW_MAY_IMPORT, "http", "budget", "outbound")
#: the composition roots: they open the database (``ehrbridge.storage``) and hand its ports on;
#: every other module knows the ports alone
COMPOSITION_ROOTS = ("ehrbridge.cli", "ehrbridge.api.serve", "ehrbridge.runner.serve")
#: modules that never import each other (the composition root hands the backfill to the poller)
APART = frozenset({"ehrbridge.connectors.fhir.poller", "ehrbridge.connectors.fhir.backfill"})


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(text: str, module: str, *, package: bool = False) -> list[tuple[int, str]]:
    """(line, imported module) for every import in a module's text, at any depth."""
    here = module if package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from ehrbridge import runner`` imports the submodule
            names = [f"{base}.{alias.name}" for alias in node.names] if base == "ehrbridge" else []
            found.extend((node.lineno, name) for name in names or [base])
    return found


def _file_imports(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    return _imports(text, _module(path), package=path.name == "__init__.py")


def _layer(name: str) -> str | None:
    """``ehrbridge.runner.config`` -> ``runner``; None outside the package."""
    parts = name.split(".")
    if parts[0] != "ehrbridge" or len(parts) < 2:
        return None
    return parts[1]


def _violations() -> list[str]:
    wrong: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        own = _layer(_module(path))
        for line, name in _file_imports(path):
            layer = _layer(name)
            if layer is None:
                continue
            where = f"{path.relative_to(SRC.parent)}:{line}: imports {name}"
            if own == "worldmodel" and layer not in WORLDMODEL_MAY_IMPORT:
                wrong.append(f"{where} (the world model imports only base modules)")
            if own == "review" and layer not in REVIEW_MAY_IMPORT:
                wrong.append(f"{where} (review imports only the layers before it)")
            if own == "outbound" and layer not in OUTBOUND_MAY_IMPORT:
                wrong.append(f"{where} (outbound imports only the layers before it)")
            if own == "connectors" and layer == "runner":
                wrong.append(f"{where} (connectors never import the runner)")
            if _module(path) in APART and name in APART - {_module(path)}:
                wrong.append(f"{where} (the FHIR poller and backfill share only auth and versions)")
            module = _module(path)
            roots = (module == r or module.startswith(f"{r}.") for r in COMPOSITION_ROOTS)
            if layer == "storage" and own != "storage" and not any(roots):
                wrong.append(f"{where} (only composition roots open the storage layer)")
            if own != "cli" and layer == "cli":
                wrong.append(f"{where} (only the command line imports the command line)")
    return wrong


def test_the_layers_import_inward() -> None:
    assert _violations() == []


def test_the_check_sees_every_kind_of_import() -> None:
    text = (
        "from typing import TYPE_CHECKING\n"
        "from . import store\n"
        "from ehrbridge import runner\n"
        "if TYPE_CHECKING:\n"
        "    from ehrbridge.api.service import AgentService\n"
        "def f():\n"
        "    import ehrbridge.fhir.client\n"
    )
    names = {name for _, name in _imports(text, "ehrbridge.worldmodel.example")}
    assert names == {
        "typing",
        "ehrbridge.worldmodel",
        "ehrbridge.runner",
        "ehrbridge.api.service",
        "ehrbridge.fhir.client",
    }
