"""The reference side of the pruning benchmark: llm-compressor's SparseGPT / Wanda on the shared protocol.

The wall-time target of the pruning stage is relative ("SparseGPT 2:4 in at most half of llm-compressor's
wall time on this machine"), and this 2-core machine's speed drifts by 20-30% within an hour, so the two
have to be timed side by side: this script runs llm-compressor 0.14 on the same model, the same 128 × 512
calibration windows (/work/shared/PROTOCOL.md) and the same modules (every Linear of the decoder blocks), and
prints its prune wall time as JSON. llm-compressor is not a dependency of this project; give the script a
virtual environment of its own:

    python3.11 -m venv /tmp/llmc && /tmp/llmc/bin/pip install llmcompressor==0.14.0.1 torch==2.13.0+cpu
    /tmp/llmc/bin/python benchmarks/reference_llmcompressor.py \
        --model ~/.cache/sparsefleet/models/smollm2-135m --method sparsegpt --pattern 2:4 [--save DIR]

`--model` is the dense safetensors directory `prune-jobs` converts `embedded:smollm2-135m` into. With
`--save`, the pruned model is written for /work/shared/tools/ppl_check.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

DATA = Path(os.environ.get("SPARSEFLEET_SHARED", "/work/shared")) / "data" / "wikitext-2"


def protocol_windows(tokenizer, samples: int, seqlen: int) -> list[list[int]]:  # noqa: ANN001
    """The protocol's calibration: windows at offsets drawn from a seeded generator."""
    ids = tokenizer((DATA / "wiki.valid.tokens.txt").read_text(), return_tensors="pt").input_ids[0]
    generator = torch.Generator().manual_seed(0)
    starts = torch.randint(0, ids.numel() - seqlen - 1, (samples,), generator=generator)
    return [ids[s : s + seqlen].tolist() for s in starts.tolist()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="dense HF directory (safetensors)")
    parser.add_argument("--method", choices=("sparsegpt", "wanda"), default="sparsegpt")
    parser.add_argument("--pattern", default="2:4", help="N:M, or 'unstructured' (50%%)")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--save", type=Path, default=None, help="write the pruned model here")
    args = parser.parse_args()

    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import WandaPruningModifier
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    windows = protocol_windows(tokenizer, args.samples, args.seqlen)
    dataset = Dataset.from_dict({"input_ids": windows, "attention_mask": [[1] * len(w) for w in windows]})
    structure = "0:0" if args.pattern == "unstructured" else args.pattern
    # Every Linear but the head. (A regex naming the decoder blocks' submodules would also match `mlp` and
    # `self_attn`, and llm-compressor then hooks their linears once per matching ancestor: double work.)
    common = dict(sparsity=0.5, mask_structure=structure, targets=["Linear"], ignore=["re:.*lm_head"])
    if args.method == "sparsegpt":
        recipe = SparseGPTModifier(block_size=128, dampening_frac=0.01, **common)
    else:
        recipe = WandaPruningModifier(**common)

    load_start = os.getloadavg()
    start = time.perf_counter()
    cpu_start = time.process_time()
    oneshot(
        model=model,
        dataset=dataset,
        recipe=recipe,
        num_calibration_samples=args.samples,
        max_seq_length=args.seqlen,
        pipeline="sequential",
    )
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    if args.save is not None:
        model.save_pretrained(args.save, save_compressed=False)
        tokenizer.save_pretrained(args.save)
    print(
        json.dumps(
            {
                "tool": "llmcompressor",
                "method": args.method,
                "pattern": args.pattern,
                "prune_wall_s": round(wall, 1),
                "prune_cpu_s": round(cpu, 1),
                "load_average": [load_start, os.getloadavg()],
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
