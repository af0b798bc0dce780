"""The command line as a newcomer meets it: ``demo --help`` states the demo's own defaults, a taken
port is reported before any URL, and the URL the demo advertises is served when it says so."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from exporter import cli
from exporter.config import Settings
from tests.support import ROOT, free_port
from tests.test_config import SECRET, run_cli


def help_blocks(text: str) -> dict[str, str]:
    """Flag -> its metavar and help text, whitespace collapsed, from argparse's options list."""
    blocks: dict[str, str] = {}
    options = text.split("options:", 1)[1]
    for chunk in re.split(r"\n(?=  -)", options):
        match = re.match(r"\s*(?:-\w, )?(--[\w-]+)(.*)", chunk, re.S)
        if match:
            blocks[match.group(1)] = " ".join(match.group(2).split())
    return blocks


def test_demo_help_states_the_defaults_the_demo_uses() -> None:
    result = run_cli("demo", "--help")
    assert result.returncode == 0, result.stderr
    blocks = help_blocks(result.stdout)
    assert "demo default 127.0.0.1;" in blocks["--listen-address"]
    assert "demo default 2;" in blocks["--poll-interval"]
    assert "demo default 0;" in blocks["--max-requests-per-second"]
    for flag, exporter_default in [
        ("--listen-address", "0.0.0.0"),
        ("--poll-interval", "10.0"),
        ("--max-requests-per-second", "10.0"),
    ]:
        assert exporter_default not in blocks[flag], blocks[flag]
        assert "LETTA_EXPORTER_" not in blocks[flag], blocks[flag]  # no environment variable sets it
    # The settings the demo does not change keep the exporter's defaults and environment names.
    assert "(default: 8284) [env: LETTA_EXPORTER_PORT]" in blocks["--port"]


def settings_from_main(monkeypatch, *argv: str) -> Settings:
    """The settings ``letta-exporter *argv`` would serve with (nothing is served, logging untouched)."""
    served: list[Settings] = []

    async def serve(settings: Settings) -> None:
        served.append(settings)

    monkeypatch.setattr(cli, "_serve", serve)
    monkeypatch.setattr(cli, "_run_demo", lambda settings: served.append(settings) or 0)
    monkeypatch.setattr("exporter.logsetup.configure_logging", lambda *args: None)
    assert cli.main(list(argv)) == 0
    return served[0]


def test_command_line_flags_win_over_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("LETTA_BASE_URL", "http://letta:8283")
    monkeypatch.setenv("LETTA_EXPORTER_POLL_INTERVAL", "30")
    monkeypatch.setenv("LETTA_EXPORTER_AGENT_LABEL", "true")
    argv = ["--base-url", "http://other:8283/", "--poll-interval", "2.5", "--no-agent-label"]
    settings = settings_from_main(monkeypatch, *argv)
    assert settings.base_url == "http://other:8283"
    assert (settings.poll_interval, settings.agent_label) == (2.5, False)


def test_the_environment_does_not_change_the_demo_defaults(monkeypatch) -> None:
    # What the library cannot do by itself: its defaults are the model's, and the environment beats them.
    monkeypatch.setenv("LETTA_EXPORTER_LISTEN_ADDRESS", "0.0.0.0")
    monkeypatch.setenv("LETTA_EXPORTER_POLL_INTERVAL", "30")
    monkeypatch.setenv("LETTA_EXPORTER_MAX_REQUESTS_PER_SECOND", "5")
    monkeypatch.setenv("LETTA_EXPORTER_PORT", "9999")
    monkeypatch.setenv("LETTA_API_KEY", SECRET)
    demo = settings_from_main(monkeypatch, "demo", "--poll-interval", "5", "--sim-rate", "7")
    assert (demo.listen_address, demo.poll_interval, demo.max_requests_per_second) == ("127.0.0.1", 5, 0)
    assert (demo.port, demo.api_key, demo.sim_rate) == (9999, None, 7)  # the environment sets the rest


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
def test_metavars_name_values_not_types(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "--max-requests-per-second RATE" in result.stdout
    assert not re.search(r"(?<!\w)SECOND\b", result.stdout)  # as a metavar (not in an env name)
    usage = result.stdout.split("options:", 1)[0]
    for flag, metavar in re.findall(r"\[(--[\w-]+) ([^\]|]+)\]", usage):
        assert re.fullmatch(r"[A-Z]+|\{[\w,]+\}", metavar), (flag, metavar)  # not str, {float,null}
    # One flag a setting: none named after an environment variable (--LETTA-BASE-URL).
    assert not re.search(r"--[A-Z]", result.stdout)


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "exporter", "demo", *args]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LETTA", "OTEL_"))}


def test_demo_on_a_taken_port_reports_the_error_and_advertises_no_url(held_port: int) -> None:
    result = subprocess.run(
        demo_command("--port", str(held_port)),
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert result.stderr.splitlines()[-1] == (
        f"letta-exporter: cannot listen on 127.0.0.1:{held_port}: Address already in use"
    )
    assert "http://127.0.0.1:" + str(held_port) not in output
    assert "open http" not in output and "Traceback" not in output


def test_demo_with_a_taken_simulator_port_says_which_server_failed(held_port: int) -> None:
    result = run_cli("demo", "--port", str(free_port()), "--sim-port", str(held_port))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"letta-exporter: cannot start the simulator on 127.0.0.1:{held_port}: Address already in use"
    )
    assert "open http" not in result.stderr


@pytest.mark.slow
def test_the_url_the_demo_advertises_is_served_when_it_is_printed() -> None:
    port = free_port()
    proc = subprocess.Popen(
        demo_command("--port", str(port)),
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any("demo: open " in line for line in seen):
            assert time.monotonic() < deadline, "no 'demo: open' line:\n" + "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert proc.poll() is None, "the demo exited:\n" + "".join(seen)
        url = seen[-1].split("demo: open ", 1)[1].strip()
        assert url == f"http://127.0.0.1:{port}/metrics"
        response = httpx.get(url, timeout=5)  # at once: the line comes only once this is served
        assert response.status_code == 200 and "letta_exporter_build_info" in response.text
        assert any("every 2.0s" in line for line in seen), "".join(seen)  # the demo's poll interval
    finally:
        proc.terminate()
        proc.wait(timeout=10)
