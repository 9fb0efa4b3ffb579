#!/bin/sh
# One-shot prune job of the compose stack: write the dense copy and every pruned variant into /data/checkpoints
# (a named volume), skipping variants already there, so `docker compose up` after the first run starts at once.
#
# To add a variant: add a `variant NAME prune-jobs-run-arguments...` line at the bottom, and a replica serving
# /data/checkpoints/NAME in fleet-cpu.yaml (CPU profile) or an engine service (GPU profile). See docs/staging.md.
set -eu

MODEL="${SPARSEFLEET_MODEL:-embedded:smollm2-135m}"
OUT="${SPARSEFLEET_CHECKPOINTS:-/data/checkpoints}"
# Optional: a text file to measure dense and pruned perplexity on (shown as the quality delta in Grafana), and
# extra `prune-jobs run` arguments for every variant, e.g. "--calibration-samples 32" for a quicker first start.
EVAL_TEXT="${SPARSEFLEET_EVAL_TEXT:-}"
EXTRA_ARGS="${SPARSEFLEET_PRUNE_ARGS:-}"
mkdir -p "$OUT"

# A directory counts as done once it is complete: work happens in NAME.partial, renamed at the end, so an
# interrupted job redoes only the unfinished variant.
done_already() {
    if [ -f "$OUT/$1/config.json" ]; then
        echo "prune-job: $1 already in $OUT, skipping"
        return 0
    fi
    rm -rf "$OUT/$1.partial"
    return 1
}

dense() {
    done_already dense && return 0
    src="$(prune-jobs fetch-model "$MODEL")"
    echo "prune-job: copying dense $MODEL from $src"
    cp -R "$src" "$OUT/dense.partial"
    mv "$OUT/dense.partial" "$OUT/dense"
}

variant() {
    name="$1"
    shift
    done_already "$name" && return 0
    echo "prune-job: pruning $name: prune-jobs run --model $MODEL $* $EXTRA_ARGS"
    # EXTRA_ARGS is split into words on purpose (a list of arguments in one variable).
    # shellcheck disable=SC2086
    prune-jobs run --model "$MODEL" "$@" $EXTRA_ARGS ${EVAL_TEXT:+--eval-text "$EVAL_TEXT"} \
        --output "$OUT/$name.partial"
    mv "$OUT/$name.partial" "$OUT/$name"
}

dense
variant sparse-2-4 --method wanda --pattern 2:4 --calibration self
echo "prune-job: checkpoints ready in $OUT: $(ls "$OUT" | tr '\n' ' ')"
