"""``aisle build`` through the real command line: clear errors, never a stack trace; a real build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aisle.index.versions import VersionStore
from tests.index.conftest import REPO
from tests.index.test_catalog import BAD_ROWS, write_csv


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AISLE_LOG_LEVEL": "ERROR",
        "HF_HUB_OFFLINE": "1",
        "AISLE_CACHE_DIR": os.environ.get("AISLE_CACHE_DIR", str(REPO / ".cache" / "aisle")),
    }
    env.pop("AISLE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "aisle", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.fixture
def cli(capsys, monkeypatch):
    """Runs ``aisle`` in this process (same code as the script, without interpreter start-up)."""
    from aisle.cli import main

    # --config sets AISLE_CONFIG in this process; recording it first makes the teardown undo that.
    monkeypatch.setenv("AISLE_CONFIG", "")
    monkeypatch.delenv("AISLE_CONFIG")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)

    return run


def test_bad_catalogue_prints_one_line_per_bad_row(tmp_path: Path) -> None:
    catalogue = write_csv(tmp_path / "bad.csv", BAD_ROWS)
    result = run_cli("build", "--catalog", str(catalogue), "--out", str(tmp_path / "index"))
    assert_clean_error(
        result,
        "aisle build: error: catalogue",
        "3 bad row(s); fix them or pass --skip-bad-rows",
        "row 2 (line 3), field 'id': duplicate id 'a'",
        "row 3 (line 4), field 'title': missing title",
        "row 4 (line 5), field 'price': not a number: 'abc'",
    )
    assert not (tmp_path / "index" / "versions").exists()


def test_missing_catalogue_bad_map_and_bad_options(tmp_path: Path, cli) -> None:
    out = str(tmp_path / "index")
    assert_clean_error(cli("build", "--catalog", str(tmp_path / "nope.csv"), "--out", out), "catalogue file not found")
    catalogue = str(write_csv(tmp_path / "c.csv", BAD_ROWS[:1]))
    assert_clean_error(
        cli("build", "--catalog", catalogue, "--out", out, "--map", "titel=name"), "cannot map a column to 'titel'"
    )
    assert_clean_error(cli("build", "--catalog", catalogue, "--out", out, "--keep", "0"), "--keep: must be at least 1")
    assert_clean_error(
        cli("build", "--catalog", catalogue, "--out", out, "--index-type", "ivf-sq4"), "invalid choice: 'ivf-sq4'"
    )


def test_invalid_config_is_reported_not_raised(tmp_path: Path, cli) -> None:
    catalogue = str(write_csv(tmp_path / "c.csv", BAD_ROWS[:1]))
    out = str(tmp_path / "index")
    assert_clean_error(
        cli("build", "--catalog", catalogue, "--out", out, "--config", str(tmp_path / "none.yaml")),
        "config file not found",
    )
    bad_value = tmp_path / "bad.yaml"
    bad_value.write_text("threads: 0\n")
    assert_clean_error(
        cli("build", "--catalog", catalogue, "--out", out, "--config", str(bad_value)), "invalid settings", "threads"
    )
    typo = tmp_path / "typo.yaml"
    typo.write_text("threads: 1\nprot: 19006\n")  # port is a service setting: known, but `prot` is not
    assert_clean_error(
        cli("build", "--catalog", catalogue, "--out", out, "--config", str(typo)),
        f"config file {typo}: unknown setting 'prot' (did you mean 'port'?)",
    )
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("columns: [unclosed\n")
    assert_clean_error(
        cli("build", "--catalog", catalogue, "--out", out, "--config", str(bad_yaml)), "invalid config file"
    )


def test_unwritable_index_root_is_reported(tmp_path: Path, cli) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    catalogue = str(write_csv(tmp_path / "c.csv", BAD_ROWS[:1]))
    result = cli("build", "--catalog", catalogue, "--out", str(blocker / "index"))
    assert_clean_error(result, f"cannot build the index under {blocker / 'index'}", "Not a directory")


@pytest.mark.slow
def test_real_build_with_skipped_rows_then_an_unchanged_rebuild(tmp_path: Path, real_encoder) -> None:
    catalogue = str(write_csv(tmp_path / "bad.csv", BAD_ROWS))
    out = str(tmp_path / "index")
    first = run_cli("build", "--catalog", catalogue, "--out", out, "--skip-bad-rows", "--json", "--no-progress")
    assert first.returncode == 0, first.stderr
    for row, field in ((2, "id"), (3, "title"), (4, "price")):
        assert f"skipped row {row} (line {row + 1}), field '{field}'" in first.stderr
    human, summary_line = first.stdout.strip().splitlines()
    summary = json.loads(summary_line)
    assert human.startswith(f"published {summary['version']}: 2 items (2 encoded, 0 re-used, 3 skipped)")
    assert " s (build " in human
    assert (summary["items"], summary["skipped"], summary["index_type"]) == (2, 3, "flat")
    assert VersionStore(out).current_name() == summary["version"]

    again = run_cli("build", "--catalog", catalogue, "--out", out, "--skip-bad-rows", "--json", "--no-progress")
    assert again.returncode == 0, again.stderr
    rebuilt = json.loads(again.stdout.strip().splitlines()[-1])
    assert (rebuilt["encoded"], rebuilt["reused"]) == (0, 2)
    assert rebuilt["reused_files"] == ["index.text.faiss", "lexical", "vectors.text.npy"]


def test_log_level_is_read_in_any_case_and_a_bad_one_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("AISLE_CONFIG", None)
    command = [sys.executable, "-m", "aisle", "versions", "--index", str(tmp_path / "index")]
    for level in ("warning", "Error"):
        result = subprocess.run(
            command,
            check=False,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**env, "AISLE_LOG_LEVEL": level},
        )
        assert "Traceback" not in result.stderr and "AISLE_LOG_LEVEL" not in result.stderr, result.stderr
    result = subprocess.run(
        command,
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "AISLE_LOG_LEVEL": "loud"},
    )
    assert_clean_error(
        result, "aisle: error: AISLE_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'loud'"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "AISLE_CONFIG",
            "/nonexistent/aisle.yaml",
            "aisle serve: error: invalid settings: AISLE_CONFIG names a missing config file",
        ),
        (
            "AISLE_MODEL",
            "/nonexistent/model",
            "aisle serve: error: cannot load the model '/nonexistent/model': model directory",
        ),
    ],
    ids=["missing-config-file", "missing-model"],
)
def test_serve_reports_a_bad_setting_without_a_trace(
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("AISLE_LOG_LEVEL", "ERROR")
    result = cli("serve", "--index", str(tmp_path / "index"), "--port", "1")
    assert_clean_error(result, message)


def test_serve_refuses_an_unknown_config_key_and_a_bad_rule(cli, tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("prot: 19006\n")
    assert_clean_error(
        cli("serve", "--index", str(tmp_path / "index"), "--config", str(typo)),
        f"aisle serve: error: invalid settings: config file {typo}: unknown setting 'prot' (did you mean 'port'?)",
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text("diversty:\n  lambda_: 0.5\n")
    config = tmp_path / "aisle.yaml"
    config.write_text(f"rules_file: {rules}\n")
    # The rules are read before the index and the model: this fails fast, on its own line.
    assert_clean_error(
        cli("serve", "--index", str(tmp_path / "index"), "--config", str(config)),
        f"aisle serve: error: rules file {rules} is invalid: diversty: Extra inputs are not permitted",
    )
