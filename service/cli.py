"""`gateway` command line: serve a fleet over HTTP. User errors: one line on stderr, exit code 2."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer

from service.errors import ConfigError
from service.settings import FleetConfig, build_fleet, load_fleet_file

app = typer.Typer(name="gateway", add_completion=False, pretty_exceptions_enable=False)
log = logging.getLogger("service")


@app.command()
def serve(
    fleet: Path | None = typer.Option(
        None,
        "--fleet",
        help="Fleet YAML file (docs/service.md). Without it: embedded SmolLM2-135M dense + its "
        "2:4 Wanda copy, pruned on first start into $SPARSEFLEET_CACHE/checkpoints.",
        dir_okay=False,
    ),
    host: str | None = typer.Option(None, help="Interface to listen on; default server.host (127.0.0.1)."),
    port: int | None = typer.Option(
        None, min=0, max=65535, help="TCP port; default server.port (8000); 0 picks a free one."
    ),
    log_level: str | None = typer.Option(
        None, help="debug, info, warning or error; default server.log_level."
    ),
    check: bool = typer.Option(
        False, "--check", help="Validate the fleet, print it as JSON (keys hidden), exit."
    ),
) -> None:
    """Serve dense and sparse replicas behind one OpenAI-compatible HTTP API with Prometheus metrics.

    Every fleet field can be overridden from the environment: SPARSEFLEET_<SECTION>__<FIELD>, e.g.
    SPARSEFLEET_AUTH__API_KEYS=key1,key2 or SPARSEFLEET_ROUTING__POLICY=least_outstanding.
    SIGINT/SIGTERM shut down gracefully: in-flight requests get limits.shutdown_grace_s to finish.
    """
    if check:
        config = _load(fleet, produce=False)
        typer.echo(json.dumps(config.model_dump(mode="json"), indent=2))
        return
    level = (log_level or os.environ.get("SPARSEFLEET_SERVER__LOG_LEVEL") or "info").lower()
    _setup_logging(level)
    config = _load(fleet)
    if log_level is None and config.server.log_level != level:
        level = config.server.log_level
        logging.getLogger().setLevel(level.upper())
    overrides = {"host": host, "port": port, "log_level": level}
    server = config.server.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    _run(config.model_copy(update={"server": server}))


def _load(fleet: Path | None, *, produce: bool = True) -> FleetConfig:
    if fleet is not None:
        return load_fleet_file(fleet)
    from service.default_fleet import default_fleet_data

    return build_fleet(default_fleet_data(produce=produce), source="default fleet")


def _setup_logging(level: str) -> None:
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"--log-level must be debug, info, warning or error, not {level!r}")
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    # vLLM's per-step INFO lines drown the gateway's own; its engine processes inherit this setting.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "DEBUG" if level == "debug" else "WARNING")


def _run(config: FleetConfig) -> None:
    import uvicorn

    from service.main import create_app
    from service.server import GatewayServer

    app_ = create_app(config)
    s = config.server
    log.info(
        "gateway on http://%s:%d once its %d replicas have started (routing %s)",
        s.host,
        s.port,
        len(config.replicas),
        config.routing.policy,
    )
    GatewayServer(
        uvicorn.Config(
            app_,
            host=s.host,
            port=s.port,
            log_level=s.log_level,
            lifespan="on",
            # uvloop's event loop and httptools' C parser: the gateway's per-request CPU is its latency.
            loop="uvloop",
            http="httptools",
            timeout_graceful_shutdown=int(config.limits.shutdown_grace_s) or None,
        )
    ).run()


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
