"""The package map in docs/architecture.md holds: imports flow one way, Ray and websockets stay in
their packages, the CLI is imported by nothing, and the gateway's store reads need no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "vlm", "memory", "qa", "workers", "web", "world")
# what each package may import besides itself (docs/architecture.md's map); "core" is scenekv/*.py
MAY_IMPORT = {
    "core": set(),
    "ingest": {"core"},
    "vlm": {"core"},
    "memory": {"core", "ingest", "vlm"},
    "qa": {"core", "ingest", "vlm", "memory"},
    "workers": {"core", "ingest", "vlm", "memory", "qa"},
    "web": {"core", "ingest", "vlm", "memory", "qa", "workers"},
    "world": {"core", "ingest", "vlm", "memory", "qa"},
    "cli": {"core", *PACKAGES},
}
ONLY_IN = {"ray": "workers", "websockets": "web"}


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    if rel[0] == "scenekv":
        return "cli" if rel[1] == "cli" else "core"
    return rel[0]


def _target(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "scenekv":
        return None
    if len(parts) > 1 and (parts[1] == "cli" or parts[1] in PACKAGES):
        return parts[1]
    return "core"


def _imports(path: Path):
    """Every absolute import in a file, top level or inside a function (lazy imports count too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module
            if node.module == "scenekv":  # `from scenekv import cli`
                yield from (f"scenekv.{a.name}" for a in node.names)


def _product_files():
    for top in ("scenekv", *PACKAGES):
        yield from sorted((ROOT / top).rglob("*.py"))


def test_imports_flow_one_way_and_the_cli_is_imported_by_nothing():
    wrong = []
    for path in _product_files():
        src = _package_of(path)
        for module in _imports(path):
            dst = _target(module)
            if dst is not None and dst != src and dst not in MAY_IMPORT[src]:
                wrong.append(f"{path.relative_to(ROOT)} ({src}) imports {module} ({dst})")
            top = module.split(".")[0]
            if top in ONLY_IN and src != ONLY_IN[top]:
                wrong.append(f"{path.relative_to(ROOT)} imports {top} outside {ONLY_IN[top]}/")
    assert not wrong, "\n".join(wrong)


def test_the_gateways_store_reads_import_without_torch():
    code = (
        "import sys, scenekv.web.streams, scenekv.memory.streams, scenekv.memory.scenes, "
        "scenekv.memory.events, scenekv.memory.redis_conn; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
