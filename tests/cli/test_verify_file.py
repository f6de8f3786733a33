"""``prefcenter consent verify --file``: only a JSONL export can be verified; anything else is a clear
one-line error (exit 2), never a traceback; a JSONL export with a damaged line is a broken chain (exit 1)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tests.cli.test_cli import run

HINT = "JSONL is the format to verify; CSV exports cannot be verified, re-export with format=jsonl"


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real ledger (the demo's), exported by the CLI as JSONL and as CSV."""
    tmp = tmp_path_factory.mktemp("verify-file")
    run(tmp, "demo", "--customers", "3")
    jsonl, csv = tmp / "export.jsonl", tmp / "export.csv"
    run(tmp, "consent", "export", "--format", "jsonl", "-o", str(jsonl))
    run(tmp, "consent", "export", "--format", "csv", "-o", str(csv))
    assert csv.read_text().startswith("seq,id,at,") and len(csv.read_text().splitlines()) > 3
    return jsonl, csv


def assert_usage_error(result: object, path: Path) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert HINT in lines[0] and str(path) in lines[0]
    assert result.stdout == ""  # type: ignore[attr-defined]


def test_a_csv_export_is_a_clear_error_not_a_traceback(tmp_path: Path, exports: tuple[Path, Path]) -> None:
    _, csv = exports
    assert_usage_error(run(tmp_path, "consent", "verify", "--file", str(csv), check=False), csv)


@pytest.mark.parametrize(
    "content",
    [
        b"hello, world\n",
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"[1, 2, 3]\n",
        b"42\n",
        b'"text"\n',
        b"\xef\xbb\xbfseq,id\n",
    ],
    ids=["text", "binary", "json-array", "json-number", "json-string", "csv-with-bom"],
)
def test_a_file_that_is_not_jsonl_events_is_the_same_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "not-an-export.txt"
    path.write_bytes(content)
    assert_usage_error(run(tmp_path, "consent", "verify", "--file", str(path), check=False), path)


def test_the_jsonl_export_still_verifies(tmp_path: Path, exports: tuple[Path, Path]) -> None:
    jsonl, _ = exports
    result = msgspec.json.decode(run(tmp_path, "consent", "verify", "--file", str(jsonl)).stdout)
    assert result["ok"] and result["events"] == len(jsonl.read_bytes().splitlines())


@pytest.mark.parametrize(
    "damage", [b"{not json\n", b"[1, 2]\n", b"\xff\xfe\n"], ids=["garbled", "array", "bytes"]
)
def test_a_damaged_line_in_a_jsonl_export_is_a_broken_chain_at_its_seq(
    tmp_path: Path, exports: tuple[Path, Path], damage: bytes
) -> None:
    """A JSONL export whose third line was damaged: exit 1 naming seq 3, like any other tampering."""
    jsonl, _ = exports
    lines = jsonl.read_bytes().splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"".join([*lines[:2], damage, *lines[3:]]))
    result = run(tmp_path, "consent", "verify", "--file", str(broken), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    body = msgspec.json.decode(result.stdout)
    assert (
        body["ok"] is False and body["first_bad_seq"] == 3 and "line 3 is no JSON object" in body["problem"]
    )


def test_an_empty_file_is_an_empty_chain(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert msgspec.json.decode(run(tmp_path, "consent", "verify", "--file", str(empty)).stdout)["ok"] is True
