"""The package works outside its checkout (issue 10, item 1): a wheel built from the tree, installed
into a fresh venv, runs ``demo``, ``policy test`` and ``serve`` from an empty folder, with the
migrations and the default policy (and its test cases) read from inside the installed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.live import free_port, stop

REPO = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would let the venv import the checkout instead of the
    wheel, and without the caller's PREFCENTER_* settings."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PREFCENTER_")}
    return {**env, "PREFCENTER_LOG_LEVEL": "warning", **extra}


def check(
    cmd: list[str | Path], *, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_every_folder_of_the_package_is_listed_in_pyproject() -> None:
    """pyproject.toml lists the packages (the mapped migrations/ and policies/ rule out discovery):
    a new folder of prefcenter/ that is not listed would be missing from the wheel."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        ".".join(d.relative_to(REPO).parts)
        for d in [REPO / "prefcenter", *(REPO / "prefcenter").rglob("*")]
        if d.is_dir() and d.name != "__pycache__" and any(f.is_file() for f in d.iterdir())
    }
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert config["package-dir"] == {"prefcenter.migrations": "migrations", "prefcenter.policies": "policies"}
    for mapped in ("migrations/sqlite", "policies", "policies/tests"):
        assert "prefcenter." + mapped.replace("/", ".") in listed and (REPO / mapped).is_dir()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, a fresh venv with it installed at the pinned versions)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # a copy: building in the shared tree would leave build/ and egg-info there
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("prefcenter", "migrations", "policies"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = root / "dist"
    check([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, src], timeout=300)
    (wheel,) = dist.glob("prefcenter-*.whl")
    venv = root / "venv"
    check([sys.executable, "-m", "venv", venv], timeout=120)
    # The dependencies come from pip's cache and the machine's package index, at the pinned versions.
    check(
        [venv / "bin" / "python", "-m", "pip", "install", "-c", REPO / "constraints.txt", wheel], timeout=480
    )
    return wheel, venv


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


@pytest.mark.slow
def test_the_wheel_carries_migrations_policy_and_cases(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"prefcenter/migrations/sqlite/{p.name}" for p in (REPO / "migrations" / "sqlite").glob("*.sql")
    }
    expected |= {f"prefcenter/policies/{p.name}" for p in (REPO / "policies").glob("*.toml")}
    expected |= {f"prefcenter/policies/tests/{p.name}" for p in (REPO / "policies" / "tests").glob("*.toml")}
    expected |= {p.relative_to(REPO).as_posix() for p in (REPO / "prefcenter").rglob("*.py")}
    assert "prefcenter/policies/default.toml" in expected and len(expected) > 20
    assert expected - names == set()
    assert not any(n.startswith(("migrations/", "policies/", "tests/")) for n in names)


@pytest.mark.slow
def test_the_installed_package_is_the_wheel_not_the_checkout(built: tuple[Path, Path], empty: Path) -> None:
    _, venv = built
    out = check(
        [venv / "bin" / "python", "-c", "import prefcenter; print(prefcenter.__file__)"],
        cwd=empty,
        timeout=60,
    ).stdout
    assert Path(out.strip()).is_relative_to(venv)


@pytest.mark.slow
def test_demo_runs_in_an_empty_folder(built: tuple[Path, Path], empty: Path) -> None:
    _, venv = built
    result = check([venv / "bin" / "prefcenter", "demo", "--customers", "12"], cwd=empty, timeout=180)
    assert "12 customers created" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("pck_")
    assert (empty / "prefcenter.db").exists()


@pytest.mark.slow
def test_policy_test_runs_the_packaged_cases(built: tuple[Path, Path], empty: Path) -> None:
    _, venv = built
    result = check([venv / "bin" / "prefcenter", "policy", "test"], cwd=empty, timeout=120)
    last = result.stdout.strip().splitlines()[-1]
    assert last.endswith("passed, 0 failed") and not last.startswith("0 ")
    packaged = next(venv.glob("lib/python*/site-packages/prefcenter/policies"))
    assert f"testing {packaged / 'default.toml'}" in result.stderr


@pytest.mark.slow
def test_serve_answers_readyz(built: tuple[Path, Path], empty: Path) -> None:
    _, venv = built
    port = free_port()
    log = (empty / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(venv / "bin" / "prefcenter"), "serve", "--port", str(port)],
        cwd=empty,
        env=clean_env(PREFCENTER_SMTP_PORT=str(free_port())),  # nothing listens: nothing is queued
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    status = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                    status = response.status
                break
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                pass
            time.sleep(0.3)
    finally:
        stop(proc)
        log.close()
    assert status == 200, (empty / "serve.log").read_text()[-3000:]
