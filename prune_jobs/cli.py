"""`prune-jobs` command line. User errors become one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from prune_jobs.errors import PruneJobError

app = typer.Typer(
    name="prune-jobs",
    help="Calibrate, prune (and optionally quantize) a causal LM into a checkpoint that vLLM loads.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Keeps typer in multi-command mode (`prune-jobs COMMAND`) whatever commands exist."""


@app.command("fetch-model")
def fetch_model(
    model: str = typer.Argument(
        "embedded:smollm2-135m",
        help="Model source: embedded:NAME, a local Hugging Face directory, or a .gguf file.",
    ),
) -> None:
    """Make MODEL available as a local Hugging Face directory and print its path (converts once, then cached)."""
    from prune_jobs.embedded import embedded_model_dir, is_embedded

    if is_embedded(model):
        path = embedded_model_dir(model)
    else:
        path = Path(model)
        if not (path / "config.json").is_file():
            raise PruneJobError(f"{model}: not an embedded:NAME model nor a directory with config.json")
    typer.echo(str(path))


@app.command("speedcheck")
def speedcheck(
    model: Path = typer.Option(..., "--model", help="Hugging Face model directory (config.json is read)."),
    dtype: str = typer.Option("bfloat16", help="Weight/activation dtype to measure: bfloat16 or float16."),
) -> None:
    """Measure 2:4 kernels for MODEL's linear shapes on the local GPU: the kernel each token bucket uses and
    the speedup over dense. Exit code 3 (one line on stderr) when there is no usable CUDA GPU."""
    from sparse24.speedcheck import EXIT_NO_GPU, NoGpuError, SpeedcheckInputError, run_speedcheck

    try:
        run_speedcheck(model, dtype)
    except SpeedcheckInputError as exc:
        raise PruneJobError(str(exc)) from None
    except NoGpuError as exc:
        typer.echo(f"no GPU: {exc}", err=True)
        raise typer.Exit(EXIT_NO_GPU) from None


def main() -> None:
    try:
        app()
    except PruneJobError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
