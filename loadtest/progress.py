"""A rich live display of the running phases: time bar, requests done, failures, tokens/s and median TTFT."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.progress_bar import ProgressBar
from rich.text import Text

from loadtest.records import RequestRecord
from loadtest.stats import percentile


class _TimeBar(BarColumn):
    """Fills with the phase's elapsed share of its issuing window (request counts are not known up front
    for closed loops, time always is)."""

    def render(self, task: Task) -> ProgressBar:
        duration = task.fields.get("duration") or 1.0
        done = 1.0 if task.finished else min((task.elapsed or 0.0) / duration, 1.0)
        return ProgressBar(
            total=1.0, completed=done, width=self.bar_width, pulse=False, animation_time=task.get_time()
        )


class _Stats(ProgressColumn):
    def render(self, task: Task) -> Text:
        f = task.fields
        text = f"{f['ok']} ok"
        if f["expected"]:
            text = f"{f['ok'] + f['failed']}/{f['expected']} · " + text
        if f["failed"]:
            text += f" · [red]{f['failed']} failed[/]"
        text += f" · {f['tps']:.1f} tok/s · TTFT P50 {f['ttft']}"
        return Text.from_markup(text)


@dataclass
class _Phase:
    task_id: int
    start: float
    ok: int = 0
    failed: int = 0
    tokens: int = 0
    ttfts: list[float] = field(default_factory=list)


class LiveProgress:
    """Implements runner.Observer. Use as a context manager around the run."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            _TimeBar(bar_width=24),
            TextColumn("{task.elapsed:>5.0f}s"),
            _Stats(),
            console=self.console,
            transient=False,
        )
        self._phases: dict[str, _Phase] = {}

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase_started(self, key: str, label: str, expected: int | None, duration_s: float) -> None:
        task_id = self._progress.add_task(
            label, total=None, duration=duration_s, expected=expected, ok=0, failed=0, tps=0.0, ttft="–"
        )
        self._phases[key] = _Phase(task_id=task_id, start=time.perf_counter())

    def request_done(self, key: str, record: RequestRecord) -> None:
        phase = self._phases[key]
        if record.ok:
            phase.ok += 1
            phase.tokens += record.output_tokens
            if record.ttft_s is not None:
                phase.ttfts.append(record.ttft_s)
        else:
            phase.failed += 1
        elapsed = max(time.perf_counter() - phase.start, 1e-9)
        ttft = f"{percentile(phase.ttfts, 50) * 1000:.0f} ms" if phase.ttfts else "–"
        self._progress.update(
            phase.task_id, ok=phase.ok, failed=phase.failed, tps=phase.tokens / elapsed, ttft=ttft
        )

    def phase_finished(self, key: str) -> None:
        phase = self._phases[key]
        self._progress.update(phase.task_id, total=1, completed=1)
        self._progress.stop_task(phase.task_id)

    def note(self, text: str) -> None:
        self._progress.console.print(text)
