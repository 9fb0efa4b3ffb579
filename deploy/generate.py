"""Write (or with --check, verify) the generated staging artefacts: recording rules and Grafana dashboards.

python deploy/generate.py           # regenerate after editing deploy/codegen/
python deploy/generate.py --check   # exit 1 if a committed file is stale (the test suite runs this)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from codegen.dashboards import render_cost_dashboard, render_serving_dashboard
from codegen.rules import render_recording_rules

DEPLOY = Path(__file__).resolve().parent
ARTEFACTS: dict[Path, Callable[[], str]] = {
    DEPLOY / "prometheus" / "rules" / "sparsefleet-recording.yml": render_recording_rules,
    DEPLOY / "grafana" / "dashboards" / "sparsefleet-serving.json": render_serving_dashboard,
    DEPLOY / "grafana" / "dashboards" / "sparsefleet-cost.json": render_cost_dashboard,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only report files that differ from the generator"
    )
    args = parser.parse_args(argv)
    stale = []
    for path, render in ARTEFACTS.items():
        text = render()
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(DEPLOY.parent))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(DEPLOY.parent)}")
    if stale:
        print(
            "error: stale generated files (run `python deploy/generate.py`): " + ", ".join(map(str, stale)),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
