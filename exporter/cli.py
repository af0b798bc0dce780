"""Command line: ``letta-exporter [flags]`` runs the exporter; ``letta-exporter demo`` runs it against
the built-in Letta simulator so a newcomer sees live metrics without a Letta account."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import CliSettingsSource

from exporter import __version__
from exporter.config import ConfigError, Settings, invalid_setting, load_settings
from exporter.defaults import LETTA_CLOUD_URL

EXIT_CONFIG = 2
log = logging.getLogger("exporter")
# What the demo uses unless its flag says otherwise (the environment does not change these: the
# container image sets LETTA_EXPORTER_LISTEN_ADDRESS=0.0.0.0, and the demo stays local unless asked).
DEMO_DEFAULTS = {"listen_address": "127.0.0.1", "poll_interval": "2", "max_requests_per_second": "0"}
# The demo polls its own simulator: no Letta URL or key to take from flags or the environment.
DEMO_FIXED = {"base_url": "http://127.0.0.1:1", "api_key": None, "api_key_file": None}  # URL replaced below
# Flags whose last word does not name their value.
METAVARS = {"max_requests_per_second": "RATE"}
DESCRIPTION = (
    "Prometheus exporter for Letta agent runs. Every flag can also be set by the environment variable "
    "shown; flags win."
)
EPILOG = (
    "Subcommands: 'letta-exporter demo --help' runs against a built-in simulator; "
    "'letta-exporter slo-rules --help' writes Prometheus SLO rules from an SLO file (docs/slo.md)."
)


class DemoSettings(Settings):
    """Run the Letta demo: a built-in Letta simulator plus the exporter polling it."""

    sim_rate: float = Field(2.0, ge=0, description="Simulated runs per second.")
    sim_agents: int = Field(5, ge=1, description="Simulated agents.")
    sim_port: int = Field(0, ge=0, le=65535, description="Simulator port (0 = any free port).")
    sim_trace_mode: Literal["rows", "501", "empty"] = Field(
        "rows",
        description="What the simulator's /trace answers: Letta-shaped span rows, 501 as a self-hosted "
        "Letta without ClickHouse, or [] (empty).",
    )


def _add_argument(parser: argparse.ArgumentParser, *flags: str, demo: bool, **kwargs: Any) -> Any:
    """Adds a flag as pydantic-settings (2.16) built it, but for what it cannot be told per field:
    it adds a second flag named after an env alias (--LETTA-BASE-URL beside --base-url); its
    metavar is the type (str, {float,null}, tuple[float,...]: the buckets are comma-separated,
    not a tuple), with no per-field override; and its help gives every field the model's default
    and env name, where the demo's own defaults come from no environment variable."""
    name = flags[-1].removeprefix("--").replace("-", "_")
    if demo and name in DEMO_FIXED:
        return None
    metavar = kwargs.get("metavar")
    if metavar is not None and (not metavar.startswith("{") or "null" in metavar):  # keep {a,b} choices
        kwargs["metavar"] = METAVARS.get(name, name.split("_")[-1].upper())
    if demo and name in DEMO_DEFAULTS:
        description = DemoSettings.model_fields[name].description
        kwargs["help"] = (
            f"{description} [demo default {DEMO_DEFAULTS[name]}; set by this flag, not the environment]"
        )
    return parser.add_argument(flags[-1], **kwargs)


def cli_source(*, demo: bool = False) -> CliSettingsSource[argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(
        prog="letta-exporter demo" if demo else "letta-exporter",
        description=DemoSettings.__doc__ if demo else DESCRIPTION,
        epilog=None if demo else EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"letta-exporter {__version__}")
    return CliSettingsSource(
        DemoSettings if demo else Settings,
        root_parser=parser,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_show_env_vars=True,
        add_argument_method=partial(_add_argument, demo=demo),
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["slo-rules"]:  # a tool beside the exporter: none of its settings apply
        from exporter.rules.cli import main as slo_rules

        return slo_rules(argv[1:])
    # Not a CliSubCommand: the library gives a subcommand a model of its own, so `demo --port` would
    # set that model's port, which neither LETTA_EXPORTER_PORT nor the exporter's settings share.
    demo = argv[:1] == ["demo"]
    flags = cli_source(demo=demo)(args=argv[demo:])()
    # Flags go in as init values, which win over the environment; so do the demo's own defaults
    # (pydantic-settings has no per-command defaults: a model's defaults lose to the environment).
    overrides = {**DEMO_DEFAULTS, **flags, **DEMO_FIXED} if demo else flags
    try:
        settings = load_settings(overrides, DemoSettings if demo else Settings)
        check_start_up(settings, demo=demo)
        from exporter.logsetup import configure_logging

        configure_logging(settings.log_level, settings.log_format, [settings.api_key_value() or ""])
        from exporter.malloc import fix_mmap_threshold

        # Here, not in a test's or the Dockerfile's environment: however the exporter is started.
        log.debug("glibc mmap threshold fixed: %s", fix_mmap_threshold())
        if demo:
            return _run_demo(settings)
        asyncio.run(_serve(settings))
    except ConfigError as exc:
        # A bad setting, or a port in use (raised before any URL is advertised): one line to act on.
        print(f"letta-exporter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def check_start_up(settings: Settings, *, demo: bool = False) -> None:
    """What start-up checks beyond each setting's own value: the OpenTelemetry environment trace export
    reads, a key for Letta Cloud, the web config file. Raises ConfigError naming the setting."""
    from exporter.traces.otlp_env import check_environment  # the OTel SDK: only once settings are read

    try:
        check_environment(settings.traces)
    except ValueError as exc:
        raise ConfigError(invalid_setting("traces", str(exc))) from None
    if not demo and settings.base_url == LETTA_CLOUD_URL and settings.api_key is None:
        raise ConfigError(
            f"invalid setting LETTA_API_KEY: required for Letta Cloud ({LETTA_CLOUD_URL}); set "
            "LETTA_BASE_URL for a self-hosted server, or run 'letta-exporter demo'"
        )
    if settings.web_config_file is not None:
        from exporter.webconfig import load_web_config

        load_web_config(settings.web_config_file)


async def _serve(settings: Settings, on_serving: Callable[[str], None] | None = None) -> None:
    from exporter.app import serve

    await serve(settings, on_serving=on_serving)


def _browsable(url: str) -> str:
    """The URL to open for a server listening on every address: its loopback one."""
    return url.replace("://0.0.0.0:", "://127.0.0.1:", 1).replace("://[::]:", "://[::1]:", 1)


def _run_demo(settings: DemoSettings) -> int:
    from exporter.simulator import SimConfig, Simulator

    config = SimConfig(
        agents=settings.sim_agents, runs_per_second=settings.sim_rate, trace_mode=settings.sim_trace_mode
    )
    sim = Simulator(config)
    try:
        sim.start(host="127.0.0.1", port=settings.sim_port)
    except OSError as exc:
        raise ConfigError(
            f"cannot start the simulator on 127.0.0.1:{settings.sim_port}: {exc.strerror or exc}"
        ) from None
    try:
        settings = settings.model_copy(update={"base_url": sim.base_url})
        log.info("demo: simulated Letta at %s (%.1f runs/s, %d agents)", sim.base_url,
                 settings.sim_rate, settings.sim_agents)  # fmt: skip
        asyncio.run(_serve(settings, lambda url: log.info("demo: open %s", _browsable(url))))
    finally:
        sim.stop()
    return 0
