"""Perplexity of a checkpoint *as vLLM serves it*, on the shared protocol (docs/pruning.md).

The text is tokenized as one string with the checkpoint's tokenizer; the first WINDOWS non-overlapping
windows of SEQLEN tokens go to vLLM as token prompts with `prompt_logprobs=0`, which returns the
log-probability of every actual next token; perplexity = exp(mean NLL over the SEQLEN − 1 predicted tokens
of each window). Prints one JSON line.

    python benchmarks/vllm_perplexity.py DIR /work/shared/data/wikitext-2/wiki.test.raw.txt [--windows 40]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("text", type=Path)
    parser.add_argument("--seqlen", type=int, default=1024)
    parser.add_argument("--windows", type=int, default=40)
    args = parser.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "prune_jobs"))
    from vllm_probe import ensure_plugin_entry_point  # the W4A16 plugin, also when not pip-installed

    ensure_plugin_entry_point()
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams, TokensPrompt

    from prune_jobs.calibration import tokenize_as_one_string  # the protocol's tokenization, shared

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    ids = tokenize_as_one_string(tokenizer, args.text.read_text(encoding="utf-8")).tolist()
    windows = [ids[i * args.seqlen:(i + 1) * args.seqlen] for i in range(args.windows)]
    llm = LLM(model=str(args.model), dtype="float32", enforce_eager=True, max_model_len=args.seqlen + 1,
              max_num_seqs=4, seed=0)
    start = time.perf_counter()
    sampling = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=w) for w in windows], sampling, use_tqdm=False)
    nll = 0.0
    for window, out in zip(windows, outputs, strict=True):
        nll -= sum(lp[t].logprob for t, lp in zip(window[1:], out.prompt_logprobs[1:], strict=True))
    predicted = len(windows) * (args.seqlen - 1)
    print(json.dumps({"model": str(args.model), "perplexity": round(math.exp(nll / predicted), 4),
                      "windows": len(windows), "seqlen": args.seqlen,
                      "seconds": round(time.perf_counter() - start, 1), "loadavg": os.getloadavg()}))
    llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    main()
