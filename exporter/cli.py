"""Command line: ``letta-exporter [flags]`` runs the exporter; ``letta-exporter demo`` runs it against
the built-in Letta simulator so a newcomer sees live metrics without a Letta account."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticUndefined

from exporter import __version__
from exporter.config import (
    LETTA_CLOUD_URL,
    ConfigError,
    ListenError,
    Settings,
    env_name,
    flag_name,
    load_settings,
)

EXIT_CONFIG = 2
log = logging.getLogger("exporter")
# What the demo uses unless its flag says otherwise (the environment does not change these: the
# container image sets LETTA_EXPORTER_LISTEN_ADDRESS=0.0.0.0, and the demo stays local unless asked).
DEMO_DEFAULTS = {"listen_address": "127.0.0.1", "poll_interval": "2", "max_requests_per_second": "0"}
# Flags whose last word does not name their value.
METAVARS = {"max_requests_per_second": "RATE"}


def _default_text(name: str) -> str:
    default = Settings.model_fields[name].default
    if default is None or default is PydanticUndefined:
        return "unset"
    if isinstance(default, tuple):
        return ",".join(f"{b:g}" for b in default)
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


def build_parser(prog: str = "letta-exporter", *, demo: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Run the Letta demo: a built-in Letta simulator plus the exporter polling it."
            if demo
            else "Prometheus exporter for Letta agent runs. Every flag can also be set by the "
            "environment variable shown; flags win."
        ),
        epilog=None
        if demo
        else "Subcommand: 'letta-exporter demo --help' runs against a built-in simulator.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"letta-exporter {__version__}")
    if demo:
        parser.add_argument(
            "--sim-rate", type=float, default=2.0, help="Simulated runs per second (default 2)."
        )
        parser.add_argument("--sim-agents", type=int, default=5, help="Simulated agents (default 5).")
        parser.add_argument(
            "--sim-port", type=int, default=0, help="Simulator port (default: any free port)."
        )
        parser.add_argument(
            "--sim-trace-mode",
            choices=("rows", "501", "empty"),
            default="rows",
            help="What the simulator's /trace answers: Letta-shaped span rows (default), 501 as a "
            "self-hosted Letta without ClickHouse, or [].",
        )
    for name, field in Settings.model_fields.items():
        if demo and name in ("base_url", "api_key", "api_key_file"):
            continue
        if demo and name in DEMO_DEFAULTS:
            where = "set by this flag, not the environment"
            help_text = f"{field.description} [demo default {DEMO_DEFAULTS[name]}; {where}]"
        else:
            help_text = f"{field.description} [env {env_name(name)}; default {_default_text(name)}]"
        if field.annotation is bool:
            parser.add_argument(flag_name(name), action=argparse.BooleanOptionalAction, help=help_text)
        else:
            metavar = METAVARS.get(name, name.split("_")[-1].upper())
            parser.add_argument(flag_name(name), metavar=metavar, help=help_text)
    return parser


def _overrides(namespace: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(namespace).items() if k in Settings.model_fields}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    demo = bool(argv) and argv[0] == "demo"
    if demo:
        argv = argv[1:]
    parser = build_parser("letta-exporter demo" if demo else "letta-exporter", demo=demo)
    namespace = parser.parse_args(argv)
    overrides = _overrides(namespace)
    if demo:
        overrides = {**DEMO_DEFAULTS, **overrides}
        overrides.update(base_url="http://127.0.0.1:1", api_key=None, api_key_file=None)  # replaced below
    try:
        settings = load_settings(overrides)
        if not demo and settings.base_url == LETTA_CLOUD_URL and settings.api_key is None:
            raise ConfigError(
                f"invalid setting LETTA_API_KEY: required for Letta Cloud ({LETTA_CLOUD_URL}); set "
                "LETTA_BASE_URL for a self-hosted server, or run 'letta-exporter demo'"
            )
        if settings.web_config_file is not None:
            from exporter.webconfig import load_web_config

            load_web_config(settings.web_config_file)
    except ConfigError as exc:
        print(f"letta-exporter: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    from exporter.logsetup import configure_logging

    configure_logging(settings.log_level, settings.log_format, [settings.api_key_value() or ""])
    try:
        if demo:
            return _run_demo(settings, namespace)
        asyncio.run(_serve(settings))
    except ListenError as exc:
        # Port in use, address not available: a configuration problem the user can fix.
        print(f"letta-exporter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


async def _serve(settings: Settings, on_serving: Callable[[str], None] | None = None) -> None:
    from exporter.app import serve

    await serve(settings, on_serving=on_serving)


def _browsable(url: str) -> str:
    """The URL to open for a server listening on every address: its loopback one."""
    return url.replace("://0.0.0.0:", "://127.0.0.1:", 1).replace("://[::]:", "://[::1]:", 1)


def _run_demo(settings: Settings, namespace: argparse.Namespace) -> int:
    from exporter.simulator import SimConfig, Simulator

    config = SimConfig(
        agents=namespace.sim_agents, runs_per_second=namespace.sim_rate, trace_mode=namespace.sim_trace_mode
    )
    sim = Simulator(config)
    try:
        sim.start(host="127.0.0.1", port=namespace.sim_port)
    except OSError as exc:
        raise ListenError(
            f"cannot start the simulator on 127.0.0.1:{namespace.sim_port}: {exc.strerror or exc}"
        ) from None
    try:
        settings = settings.model_copy(update={"base_url": sim.base_url})
        log.info("demo: simulated Letta at %s (%.1f runs/s, %d agents)", sim.base_url,
                 namespace.sim_rate, namespace.sim_agents)  # fmt: skip
        asyncio.run(_serve(settings, lambda url: log.info("demo: open %s", _browsable(url))))
    finally:
        sim.stop()
    return 0
