"""Immutable versions: publication, keep-N pruning, rollback, the build lock, the CLI commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aisle.index.versions import BuildLockedError, VersionError, VersionStore
from tests.index.conftest import REPO, build, small_products


def publish_several(root: Path, count: int, keep: int = 5) -> list[str]:
    names = []
    for round_number in range(count):
        products = small_products(10 + round_number)  # each version a little different
        names.append(build(root, products, keep_versions=keep).version)
    return names


def test_each_build_publishes_a_new_current_version(tmp_path: Path) -> None:
    first, second = publish_several(tmp_path, 2)
    store = VersionStore(tmp_path)
    assert first < second  # names sort by creation time
    assert store.current_name() == second
    assert (tmp_path / "current").resolve() == (tmp_path / "versions" / second).resolve()
    assert [info.name for info in store.list()] == [first, second]
    assert [info.items for info in store.list()] == [10, 11]
    assert not list(tmp_path.glob(".staging-*"))


def test_only_the_newest_n_versions_are_kept(tmp_path: Path) -> None:
    names = publish_several(tmp_path, 4, keep=2)
    assert VersionStore(tmp_path).names() == names[-2:]


def test_pruning_never_deletes_the_current_version(tmp_path: Path) -> None:
    names = publish_several(tmp_path, 3, keep=3)
    store = VersionStore(tmp_path)
    store.rollback(names[0])
    deleted = store.prune(1)
    assert store.current_name() == names[0]
    assert deleted == names[1:2]  # the newest is kept too, as it is within keep=1
    assert store.names() == [names[0], names[2]]
    with pytest.raises(ValueError, match="at least 1"):
        store.prune(0)


def test_rollback_to_previous_and_to_a_named_version(tmp_path: Path) -> None:
    names = publish_several(tmp_path, 3)
    store = VersionStore(tmp_path)
    assert store.rollback() == names[1]
    assert store.rollback() == names[0]
    with pytest.raises(VersionError, match="no version older than the current"):
        store.rollback()
    assert store.rollback(names[2]) == names[2]
    assert store.current_name() == names[2]
    with pytest.raises(VersionError, match="no published version named 'v-nope'"):
        store.rollback("v-nope")
    assert store.current_name() == names[2]


def test_rollback_without_any_current_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VersionError, match="no current version"):
        VersionStore(tmp_path).rollback()


def test_a_second_concurrent_build_is_refused(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    with store.build_lock(), pytest.raises(BuildLockedError, match=f"pid {os.getpid()}"):
        build(tmp_path, small_products())
    assert build(tmp_path, small_products()).items == 40  # the lock is released


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aisle", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AISLE_LOG_LEVEL": "ERROR"},
    )


def test_versions_and_rollback_commands(tmp_path: Path, capsys, monkeypatch) -> None:
    from aisle.cli import main

    # --config sets AISLE_CONFIG in this process; recording it first makes the teardown undo that.
    monkeypatch.setenv("AISLE_CONFIG", "")
    monkeypatch.delenv("AISLE_CONFIG")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)

    names = publish_several(tmp_path, 3)
    listed = run_cli("versions", "--index", str(tmp_path))  # once through a real process
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line[2:].split()[0] for line in lines] == names
    assert lines[-1].startswith("* ") and not lines[0].startswith("* ")
    assert "12 items" in lines[-1]

    rolled = cli("rollback", "--index", str(tmp_path))
    assert rolled.returncode == 0 and names[1] in rolled.stdout
    as_json = json.loads(cli("versions", "--index", str(tmp_path), "--json").stdout)
    assert [entry["current"] for entry in as_json] == [False, True, False]

    named = cli("rollback", names[0], "--index", str(tmp_path))
    assert named.returncode == 0 and VersionStore(tmp_path).current_name() == names[0]

    unknown = run_cli("rollback", "v-nope", "--index", str(tmp_path))  # a real process again
    assert unknown.returncode == 2
    assert "aisle rollback: error: no published version named 'v-nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    empty = cli("versions", "--index", str(tmp_path / "nothing"))
    assert empty.returncode == 2 and "no published versions" in empty.stderr
