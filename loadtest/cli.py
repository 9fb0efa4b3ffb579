"""`loadtest` command line: `run`, `fleet` and `demo`. User errors: one line (`error: ...`), exit code 2."""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from loadtest.errors import LoadTestError

try:  # typer >= 0.20 vendors click; older releases use the click package
    from typer import _click as _click_mod
except ImportError:  # pragma: no cover
    import click as _click_mod

app = typer.Typer(
    name="loadtest",
    help="Identical traffic at dense and sparse variants: latency percentiles, throughput, fleet cost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Where a validation error's field comes from on the command line.
_FLAGS = {
    "duration_s": "--duration",
    "max_requests": "--max-requests",
    "warmup_requests": "--warmup",
    "request_timeout_s": "--request-timeout",
    "drain_s": "--drain",
    "concurrency": "--concurrency",
    "rate": "--rate",
    "rates": "--rates",
    "steps": "--steps",
    "probe_concurrency": "--probe-concurrency",
    "input_tokens": "--input-tokens",
    "output_tokens": "--output-tokens",
    "spread": "--spread",
    "count": "--num-prompts",
    "max_tokens": "--max-tokens",
    "requests_per_day": "--requests-per-day",
    "requests_per_second": "--requests-per-second",
    "peak_to_mean": "--peak-to-mean",
    "output_tokens_per_request": "--tokens-per-request",
    "gpu_price_per_hour": "--gpu-price",
    "gpus_per_replica": "--gpus-per-replica",
    "variants": "--variants",
    "baseline": "--baseline",
}
# Traffic and price options shared by `run` (which sizes the fleet at the end) and `fleet`.
RequestsPerDay = Annotated[
    float | None, typer.Option("--requests-per-day", help="Fleet: mean requests/day (default 1e6).")
]
RequestsPerSecond = Annotated[
    float | None, typer.Option("--requests-per-second", help="Fleet: mean requests/s (instead of per day).")
]
PeakToMean = Annotated[float, typer.Option("--peak-to-mean", help="Fleet: peak ÷ mean load.")]
TokensPerRequest = Annotated[
    float | None, typer.Option("--tokens-per-request", help="Fleet: output tokens (default: measured).")
]
GpuPrice = Annotated[float, typer.Option("--gpu-price", help="Fleet: price of one GPU-hour.")]
GpusPerReplica = Annotated[int, typer.Option("--gpus-per-replica", help="Fleet: GPUs one replica needs.")]

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min|h)?\s*$")
_DURATION_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


@app.callback()
def _root() -> None:
    """Keeps typer in multi-command mode (`loadtest COMMAND`)."""


@app.command()
def run(
    url: str = typer.Option(
        "http://127.0.0.1:8000", "--url", help="Gateway (or any OpenAI-compatible server)."
    ),
    variants: str = typer.Option(
        ..., "--variants", help="Comma-separated variant names, e.g. dense,sparse-2:4."
    ),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Variant the others are compared to (default: the first)."
    ),
    endpoint: str = typer.Option("completions", "--endpoint", help="completions | chat"),
    mode: str = typer.Option(
        "sequential", "--mode", help="sequential (one variant after another) | interleaved"
    ),
    profile: str = typer.Option("concurrency", "--profile", help="concurrency | constant | poisson | sweep"),
    concurrency: int = typer.Option(4, "--concurrency", help="Requests in flight (profile concurrency)."),
    rate: float | None = typer.Option(None, "--rate", help="Requests/s (profiles constant, poisson)."),
    rates: str | None = typer.Option(None, "--rates", help="Sweep rates, e.g. 0.5,1,2 (default: probed)."),
    steps: int = typer.Option(5, "--steps", help="Sweep steps when --rates is not given."),
    probe_concurrency: int = typer.Option(4, "--probe-concurrency", help="Sweep's throughput probe."),
    seed: int = typer.Option(0, "--seed", help="Seeds prompts and Poisson arrivals."),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="Prompt file: .txt (one per line) or .jsonl."
    ),
    max_tokens: int = typer.Option(128, "--max-tokens", help="For prompt-file entries without their own."),
    input_tokens: int = typer.Option(128, "--input-tokens", help="Synthetic prompt length (tokens)."),
    output_tokens: int = typer.Option(64, "--output-tokens", help="Synthetic max_tokens per request."),
    spread: float = typer.Option(0.0, "--spread", help="Synthetic lengths drawn within ±spread (fraction)."),
    num_prompts: int = typer.Option(256, "--num-prompts", help="Distinct synthetic prompts."),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", help="HF tokenizer dir to count tokens exactly."
    ),
    duration: str = typer.Option("30s", "--duration", help="Issuing window per variant and step (30s, 2m)."),
    max_requests: int | None = typer.Option(None, "--max-requests", help="Per variant and step."),
    warmup: int = typer.Option(2, "--warmup", help="Unmeasured requests per variant first."),
    request_timeout: str = typer.Option("60s", "--request-timeout", help="Per request."),
    drain: str = typer.Option("30s", "--drain", help="Grace for in-flight requests after the window."),
    slo: str | None = typer.Option(
        None, "--slo", help="e.g. ttft=500ms,itl=50ms,e2e=4s,pct=90 (pct optional, default 90)."
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="SPARSEFLEET_API_KEY", help="Bearer token, if the gateway requires one."
    ),
    ignore_eos: bool = typer.Option(
        True, "--ignore-eos/--no-ignore-eos", help="Generate exactly max_tokens."
    ),
    requests_per_day: RequestsPerDay = None,
    requests_per_second: RequestsPerSecond = None,
    peak_to_mean: PeakToMean = 2.0,
    tokens_per_request: TokensPerRequest = None,
    gpu_price: GpuPrice = 2.0,
    gpus_per_replica: GpusPerReplica = 1,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Report directory (default runs/loadtest-TIME)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live display; print only the summary."),
) -> None:
    """Drive the same workload at each variant and write result.json, summary.md and plots."""
    from loadtest.config import Bounds, RunConfig
    from loadtest.slo import parse_slo

    fields = dict(
        url=url,
        variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
        baseline=baseline,
        endpoint=_choice("--endpoint", endpoint, ("completions", "chat")),
        mode=_choice("--mode", mode, ("sequential", "interleaved")),
        profile=_profile(profile, concurrency, rate, rates, steps, probe_concurrency, seed),
        workload=_workload(
            prompts, max_tokens, input_tokens, output_tokens, spread, num_prompts, seed, tokenizer
        ),
        slo=parse_slo(slo) if slo is not None else None,
        ignore_eos=ignore_eos,
        api_key=api_key,
        plan=_plan(
            requests_per_day,
            requests_per_second,
            peak_to_mean,
            tokens_per_request,
            gpu_price,
            gpus_per_replica,
        ),
        output_dir=output or Path("runs") / datetime.now().strftime("loadtest-%Y%m%d-%H%M%S"),
    )
    if not fields["variants"]:
        raise LoadTestError("--variants is empty; give e.g. --variants dense,sparse-2:4")
    config = _validated(
        RunConfig,
        bounds=_validated(
            Bounds,
            duration_s=parse_duration("--duration", duration),
            max_requests=max_requests,
            warmup_requests=warmup,
            request_timeout_s=parse_duration("--request-timeout", request_timeout),
            drain_s=parse_duration("--drain", drain, allow_zero=True),
        ),
        **fields,
    )
    execute(config, quiet=quiet)


def execute(config: Any, *, quiet: bool = False, console: Console | None = None) -> Any:
    """Run a validated RunConfig with a live display, write the reports, print the summary."""
    result = measure(config, quiet=quiet)
    publish(result, config.output_dir, console or Console())
    return result


def measure(config: Any, *, quiet: bool = False) -> Any:
    """Run the load test (with the live display unless quiet) and return its RunResult."""
    from loadtest.progress import LiveProgress
    from loadtest.run import run_load_test

    command = "loadtest " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "loadtest"
    if quiet:
        return asyncio.run(run_load_test(config, command=command))
    with LiveProgress() as live:
        return asyncio.run(run_load_test(config, observer=live, command=command))


def publish(result: Any, output_dir: Path, console: Console) -> None:
    """Write the report files and print the terminal summary."""
    from loadtest.report import write_reports
    from loadtest.terminal import print_summary

    paths = write_reports(result, output_dir)
    print_summary(result, console)
    console.print(f"wrote {', '.join(str(p) for p in paths)}", highlight=False)


@app.command()
def fleet(
    result: Path | None = typer.Option(None, "--result", help="A result.json from `loadtest run`."),
    capacity: str | None = typer.Option(
        None, "--capacity", help="Instead of --result: dense=4,sparse-2:4=5 (req/s per replica at the SLO)."
    ),
    perplexity: str | None = typer.Option(None, "--perplexity", help="With --capacity: dense=24.46,..."),
    baseline: str | None = typer.Option(None, "--baseline", help="Variant savings are measured against."),
    requests_per_day: RequestsPerDay = None,
    requests_per_second: RequestsPerSecond = None,
    peak_to_mean: PeakToMean = 2.0,
    tokens_per_request: TokensPerRequest = None,
    gpu_price: GpuPrice = 2.0,
    gpus_per_replica: GpusPerReplica = 1,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write fleet.json, fleet.md and a plot here."
    ),
) -> None:
    """Replicas, GPUs, cost per month/year and per million output tokens for each variant at a target load."""
    import json

    from loadtest.analysis import variant_capacities
    from loadtest.fleet import VariantCapacity, size_fleet
    from loadtest.report import fleet_markdown
    from loadtest.terminal import fleet_table

    plan = _plan(
        requests_per_day, requests_per_second, peak_to_mean, tokens_per_request, gpu_price, gpus_per_replica
    )
    if (result is None) == (capacity is None):
        raise LoadTestError("give either --result FILE or --capacity NAME=REQ_PER_S,...")
    if result is not None:
        from loadtest.report import load_result

        run_result = load_result(result)
        caps = variant_capacities(run_result)
        base = baseline or run_result.baseline
    else:
        rps = _pairs("--capacity", capacity or "")
        ppl = _pairs("--perplexity", perplexity) if perplexity else {}
        unknown = sorted(set(ppl) - set(rps))
        if unknown:
            raise LoadTestError(f"--perplexity names {', '.join(unknown)}, which --capacity does not")
        caps = [
            _validated(VariantCapacity, variant=name, rps_per_replica=value, perplexity=ppl.get(name))
            for name, value in rps.items()
        ]
        base = baseline or next(iter(rps))
    report = size_fleet(plan, caps, base)
    Console().print(fleet_table(report))
    if output is not None:
        from loadtest.plots import gpus_vs_traffic

        output.mkdir(parents=True, exist_ok=True)
        (output / "fleet.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
        (output / "fleet.md").write_text("\n".join(fleet_markdown(report)) + "\n")
        plot = gpus_vs_traffic(report, output / "gpus_vs_traffic.png")
        typer.echo(f"wrote {output / 'fleet.json'}, {output / 'fleet.md'}, {plot}")


@app.command()
def demo(
    duration: str = typer.Option("40s", "--duration", help="Measured window per variant."),
    concurrency: int = typer.Option(4, "--concurrency"),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Report directory (default runs/demo-TIME)."
    ),
    gateway_cmd: str | None = typer.Option(
        None, "--gateway-cmd", help="How to start the gateway (default: gateway)."
    ),
    ready_timeout: str = typer.Option(
        "20m", "--ready-timeout", help="Wait this long for the gateway's /ready."
    ),
    eval_text: Path | None = typer.Option(
        None,
        "--eval-text",
        help="Text to measure perplexities the prune reports lack (default: $SPARSEFLEET_EVAL_TEXT, or the "
        "shared WikiText-2 test file if present).",
    ),
) -> None:
    """The main job: start the gateway (embedded SmolLM2, dense + 2:4), load-test both, print the comparison
    and fleet sizing, stop the gateway."""
    from loadtest.demo import DemoOptions, run_demo

    options = _validated(
        DemoOptions,
        duration_s=parse_duration("--duration", duration),
        concurrency=concurrency,
        output_dir=output or Path("runs") / datetime.now().strftime("demo-%Y%m%d-%H%M%S"),
        gateway_cmd=shlex.split(gateway_cmd) if gateway_cmd else None,
        ready_timeout_s=parse_duration("--ready-timeout", ready_timeout),
        eval_text=eval_text,
    )
    if eval_text is not None and not eval_text.is_file():
        raise LoadTestError(f"--eval-text: {eval_text} does not exist")
    run_demo(options)


# -- option parsing helpers ----------------------------------------------------------------------


def parse_duration(flag: str, text: str, *, allow_zero: bool = False) -> float:
    """`30s`, `2m`, `1.5h`, `500ms` or a plain number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise LoadTestError(f"{flag}: {text!r} is not a duration (e.g. 30s, 2m, 500ms)")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise LoadTestError(f"{flag} must be > 0, got {text!r}")
    return seconds


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise LoadTestError(f"{flag}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _profile(
    kind: str,
    concurrency: int,
    rate: float | None,
    rates: str | None,
    steps: int,
    probe_concurrency: int,
    seed: int,
) -> Any:
    from loadtest.profiles import ConcurrencyProfile, ConstantRateProfile, PoissonProfile, SweepProfile

    kind = _choice("--profile", kind, ("concurrency", "constant", "poisson", "sweep"))
    if kind in ("constant", "poisson") and rate is None:
        raise LoadTestError(f"--profile {kind} needs --rate (requests per second)")
    if kind == "concurrency":
        return _validated(ConcurrencyProfile, concurrency=concurrency)
    if kind == "constant":
        return _validated(ConstantRateProfile, rate=rate)
    if kind == "poisson":
        return _validated(PoissonProfile, rate=rate, seed=seed)
    parsed = None
    if rates is not None:
        try:
            parsed = tuple(float(r) for r in rates.split(","))
        except ValueError:
            raise LoadTestError(f"--rates: {rates!r} is not a comma-separated list of numbers") from None
    return _validated(SweepProfile, rates=parsed, steps=steps, probe_concurrency=probe_concurrency, seed=seed)


def _workload(
    prompts: Path | None,
    max_tokens: int,
    input_tokens: int,
    output_tokens: int,
    spread: float,
    count: int,
    seed: int,
    tokenizer: str | None,
) -> Any:
    from loadtest.workloads import FileWorkload, SyntheticWorkload

    if prompts is not None:
        if not prompts.is_file():
            raise LoadTestError(f"--prompts: {prompts} does not exist")
        return _validated(FileWorkload, path=prompts, max_tokens=max_tokens)
    return _validated(
        SyntheticWorkload,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        spread=spread,
        count=count,
        seed=seed,
        tokenizer=tokenizer,
    )


def _plan(
    per_day: float | None,
    per_second: float | None,
    peak_to_mean: float,
    tokens: float | None,
    price: float,
    gpus: int,
) -> Any:
    from loadtest.fleet import TrafficPlan

    if per_day is not None and per_second is not None:
        raise LoadTestError("give --requests-per-day or --requests-per-second, not both")
    if per_day is None and per_second is None:
        per_day = 1_000_000
    return _validated(
        TrafficPlan,
        requests_per_day=per_day,
        requests_per_second=per_second,
        peak_to_mean=peak_to_mean,
        output_tokens_per_request=tokens,
        gpu_price_per_hour=price,
        gpus_per_replica=gpus,
    )


def _pairs(flag: str, text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.rpartition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise LoadTestError(f"{flag}: {item.strip()!r} is not NAME=NUMBER") from None
    return out


def _validated(model: type, **values: Any) -> Any:
    """Build a pydantic model; its first validation error becomes one line naming the command-line flag."""
    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = next((str(p) for p in reversed(err["loc"]) if isinstance(p, str) and p in _FLAGS), None)
        where = _FLAGS[field] if field else ".".join(str(p) for p in err["loc"]) or model.__name__
        message = err["msg"].removeprefix("Value error, ")
        raise LoadTestError(f"{where}: {message}") from None


def main() -> None:
    command = typer.main.get_command(app)
    try:
        code = command.main(sys.argv[1:], prog_name="loadtest", standalone_mode=False)
    except _click_mod.exceptions.NoArgsIsHelpError:
        sys.exit(0)  # typer has printed the help already
    except _click_mod.exceptions.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except LoadTestError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
