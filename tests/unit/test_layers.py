"""The import-linter contracts in pyproject.toml hold for the tree, and they bite: a copy of the package
in which a lower layer imports a higher one (or a service builds the SQLite store itself) fails them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "prefcenter", tree / "prefcenter", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    done = lint(copy_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("store/base.py", "import prefcenter.services.runtime", "Layers"),
        ("domain/model.py", "import prefcenter.store.base", "The domain is pure"),
        ("messaging/email.py", "import prefcenter.services.links", "Layers"),
        ("services/customers.py", "import prefcenter.api.app", "Layers"),
        (
            "services/customers.py",
            "import prefcenter.store.sqlite",
            "Only the bootstrap builds a concrete store",
        ),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = copy_tree(tmp_path)
    target = tree / "prefcenter" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    done = lint(tree)
    assert done.returncode != 0
    broken = [ln for ln in done.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), done.stdout
