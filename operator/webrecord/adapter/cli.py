"""`webrecord serve`: the Action protocol over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from webrecord import logs
from webrecord.adapter.backends import create_backend
from webrecord.adapter.settings import AdapterSettings

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the Action protocol (Start, Pause, ..., Describe) over HTTP",
        description="Serve the legacy Action protocol. Settings also come from "
        "WEBRECORD_ADAPTER_* environment variables; flags override them.",
    )
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8080; 0 = any free port)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening "
                        "(and the metrics port to FILE.metrics)")
    parser.add_argument("--metrics-port", type=int,
                        help="serve Prometheus metrics on GET /metrics at this port (0: any free)")
    parser.add_argument("--backend", choices=["local", "kubernetes"], help="default local")
    parser.add_argument("--state-dir", type=Path, help="local backend: tasks, videos, SQLite")
    parser.add_argument("--max-concurrent", type=int, help="local backend: recorders at once")
    parser.add_argument("--warm-slots", type=int,
                        help="local backend: warm recorder slots kept ready (0 = off; default 1)")
    parser.add_argument("--namespace", help="kubernetes backend: namespace of WebRecordings")
    parser.add_argument("--auth-keys", type=Path, help="YAML/JSON file of ApiAppKey: ApiAppSecret")
    parser.add_argument("--auth-keys-dir", type=Path, help="directory: one file per key (a Secret)")
    parser.add_argument(
        "--no-auth", action="store_true", help="accept unsigned requests (local use only)"
    )
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> AdapterSettings:
    overrides: dict[str, Any] = {}
    for flag, field in (
        ("host", "host"),
        ("port", "port"),
        ("metrics_port", "metrics_port"),
        ("backend", "backend"),
        ("state_dir", "state_dir"),
        ("max_concurrent", "max_concurrent"),
        ("warm_slots", "warm_slots"),
        ("namespace", "namespace"),
        ("auth_keys", "auth_keys_file"),
        ("auth_keys_dir", "auth_keys_dir"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    if args.no_auth:
        overrides["auth_enabled"] = False
    return AdapterSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        backend = create_backend(settings)
    except (ValueError, OSError) as exc:
        logs.event(log, "cannot start the adapter", logging.ERROR, error=str(exc))
        return 2
    return asyncio.run(_main(settings, backend, args.port_file))


async def _main(settings: AdapterSettings, backend: Any, port_file: Path | None) -> int:
    from webrecord.adapter.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(settings, backend, stop, port_file)
    except (ValueError, OSError) as exc:
        logs.event(log, "adapter stopped", logging.ERROR, error=str(exc))
        return 2
    return 0
