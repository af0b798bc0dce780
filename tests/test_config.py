"""Configuration: every setting reachable by env and flag; a bad one stops start-up with one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from exporter.config import ConfigError, Settings, env_name, flag_name, load_settings, parse_seconds
from tests.support import ROOT

SECRET = "sk-let-do-not-print-0123456789"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LETTA")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    "args, env, names",
    [
        (["--port", "0"], {}, "LETTA_EXPORTER_PORT"),
        (["--poll-interval", "soon"], {}, "LETTA_EXPORTER_POLL_INTERVAL"),
        ([], {"LETTA_EXPORTER_PAGE_SIZE": "5000"}, "LETTA_EXPORTER_PAGE_SIZE"),
        ([], {"LETTA_EXPORTER_BACKFILL": "yesterday"}, "LETTA_EXPORTER_BACKFILL"),
        ([], {"LETTA_EXPORTER_TTFT_BUCKETS": "1,0.5"}, "LETTA_EXPORTER_TTFT_BUCKETS"),
        ([], {"LETTA_EXPORTER_LOG_FORMAT": "xml"}, "LETTA_EXPORTER_LOG_FORMAT"),
        ([], {"LETTA_BASE_URL": "localhost:8283"}, "LETTA_BASE_URL"),
        ([], {"LETTA_API_KEY_FILE": "/nonexistent/key"}, "LETTA_API_KEY_FILE"),
        ([], {"LETTA_EXPORTER_ENRICH_STEPS": "maybe"}, "LETTA_EXPORTER_ENRICH_STEPS"),
    ],
)
def test_bad_setting_exits_2_with_one_line_naming_it(args, env, names) -> None:
    result = run_cli(*args, env={"LETTA_BASE_URL": "http://127.0.0.1:9", "LETTA_API_KEY": SECRET, **env})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert SECRET not in result.stderr + result.stdout


def test_letta_cloud_without_a_key_is_refused() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "LETTA_API_KEY" in result.stderr and "demo" in result.stderr


def test_help_lists_every_setting_with_its_env_name() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in Settings.model_fields:
        assert flag_name(name) in result.stdout, name
        assert env_name(name) in result.stdout, name


def test_flags_win_over_environment(monkeypatch) -> None:
    monkeypatch.setenv("LETTA_EXPORTER_POLL_INTERVAL", "30")
    monkeypatch.setenv("LETTA_BASE_URL", "http://letta:8283/")
    assert load_settings().poll_interval == 30
    settings = load_settings({"poll_interval": "2.5"})
    assert settings.poll_interval == 2.5
    assert settings.base_url == "http://letta:8283"


def test_key_from_file_and_never_in_repr(tmp_path, monkeypatch) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    monkeypatch.setenv("LETTA_API_KEY_FILE", str(key_file))
    settings = load_settings()
    assert settings.api_key_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


def test_empty_key_file_is_an_error(tmp_path, monkeypatch) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    monkeypatch.setenv("LETTA_API_KEY_FILE", str(key_file))
    with pytest.raises(ConfigError, match="LETTA_API_KEY_FILE"):
        load_settings()


@pytest.mark.parametrize("text, seconds", [("90", 90), ("1.5", 1.5), ("90s", 90), ("15m", 900), ("2h", 7200),
                                           ("1d", 86400), ("250ms", 0.25)])  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_seconds(text) == pytest.approx(seconds)
