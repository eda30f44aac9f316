#!/usr/bin/env bash
# Every GPU figure of the drafting issues from one start of a GPU machine, each benchmark
# under its own time limit, each result written to $OUT as it comes.
#
#   bash bench/gpu_session.sh PART [PART...]
#
# Parts (in the order given): setup, draft2b (the house baseline, then 2B at the automatic
# batch and one image, with and without the grammar, and at the automatic batch with and
# without the confidences), confidence (the same without the grammar-less and streamed
# runs), job (a whole job of 256 images with eight boxes a draft, part by part), click (a
# click to its first caption through the app, no drafting process running), cold (a saved
# model to its first caption), qwen3 (Qwen3-VL-8B and -4B at the automatic batch and one
# image), big (7B likewise), pool (the job's CPU side on this host's cores:
# bench/job_cpu.py, bench/draft_pipeline.py), jump (jump-forward at batch 1: each step
# length's time, one-image drafts with it off and on, a real answer's projected re-draft),
# gputests (the tests marked gpu), job-before / click-before (the same from the checkout in
# $BEFORE, for a before/after in one call), jump-qwen3 (jump for Qwen3-VL-8B and -4B),
# memory (what fills Qwen3-VL-8B's batch of 64 at its peak: bench/memory_peak.py), prompt
# (the prompt's attention on and off at the automatic batch, 2B and Qwen3-VL-8B), pieces
# (Qwen3-VL-8B at the automatic batch with its prompts written in pieces where that lets it
# grow, then not, then what fills its batch of 128 at its peak in pieces of 16),
# read-to-last (the step's attention reading the cache up to its column against all of it,
# 2B and Qwen3-VL-8B).
#
# Where things are: the repository is this script's; the real Qwen files in ../shared/models
# (or $MODELS); wheels the machine lacks in $WHEELS (installed once into /tmp/site, with
# transformers and its own needs from $WHEELS/hf unless the machine has the same version);
# the house baseline at $BASELINE. $SMOKE=1 runs every part at tiny sizes on the CPU; $LIMIT
# sets every benchmark's time limit in seconds (each has its own otherwise).
#
# $OUT gets env.txt (card, driver, date, versions, commit), results.jsonl (one line per
# benchmark: its name, command, exit status, seconds, card, driver, date and every JSON line
# it printed) and log.txt (everything else).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
OUT=${OUT:-/tmp/gpu-session-out}
mkdir -p "$OUT"
LOG=$OUT/log.txt
RESULTS=$OUT/results.jsonl
PY=${PY:-python3}
WHEELS=${WHEELS:-}
MODELS=${MODELS:-$ROOT/../shared/models}
BASELINE=${BASELINE:-$ROOT/../shared/bench/qwen2vl_baseline.py}
BEFORE=${BEFORE:-}
SMOKE=${SMOKE:-0}
WORK=${WORK:-/tmp/gpu-session}
mkdir -p "$WORK"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

card() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1
    else
        echo "cpu, none"
    fi
}

# bench NAME LIMIT_S CMD...: runs CMD under LIMIT_S seconds; its JSON lines go to results.
bench() {
    local name=$1 limit=${LIMIT:-$2}
    shift 2
    local started rc raw
    raw=$WORK/$name.out
    echo "== $(date -u +%FT%TZ) $name (limit ${limit}s): $*" | tee -a "$LOG"
    started=$(date +%s)
    # Its output lands in the log as it comes: a benchmark cut short keeps what it printed.
    set -o pipefail
    timeout -k 10 "$limit" "$@" 2>>"$LOG" | tee "$raw" >>"$LOG"
    rc=$?
    set +o pipefail
    "$PY" - "$name" "$rc" "$started" "$(card)" "$raw" "$*" >>"$RESULTS" <<'EOF'
import json, sys, time
name, rc, started, card, raw, cmd = sys.argv[1:7]
lines = []
for line in open(raw, errors="replace"):
    line = line.strip()
    if line.startswith("{"):
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
gpu, _, driver = card.partition(", ")
print(json.dumps({
    "bench": name, "rc": int(rc), "s": round(time.time() - float(started), 1),
    "card": gpu, "driver": driver, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "command": cmd, "lines": lines,
}))
EOF
    echo "== $name: exit $rc after $(($(date +%s) - started)) s" | tee -a "$LOG"
    tail -c 600 "$raw"
    echo
}

setup() {
    if [ -n "$WHEELS" ] && [ ! -f /tmp/site/.done ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$WHEELS"/*.whl >>"$LOG" 2>&1 || echo "pip failed" | tee -a "$LOG"
        have=$("$PY" -c "import transformers; print(transformers.__version__)" 2>/dev/null)
        want=$(ls "$WHEELS"/hf/transformers-*.whl 2>/dev/null | sed 's/.*transformers-\([^-]*\)-.*/\1/')
        if [ -n "$want" ] && [ "$have" != "$want" ]; then
            echo "transformers $have here, $want carried: installing it" | tee -a "$LOG"
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
                --target /tmp/site "$WHEELS"/hf/*.whl >>"$LOG" 2>&1 || echo "pip hf failed"
        fi
        touch /tmp/site/.done
    fi
    [ -n "$WHEELS" ] && export PYTHONPATH=/tmp/site:$ROOT || export PYTHONPATH=$ROOT
    {
        echo "date: $(date -u +%FT%TZ)"
        echo "commit: $(cat "$ROOT/COMMIT" 2>/dev/null || git -C "$ROOT" rev-parse HEAD 2>/dev/null)"
        echo "card, driver: $(card)"
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=memory.total,clocks.max.sm --format=csv,noheader
        echo "cores: $(nproc)"
        "$PY" -c "import sys, torch, transformers, xgrammar, sqlmodel, fastapi, app.web.app, app.engines.local.engine; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.version.cuda)"
    } >>"$OUT/env.txt" 2>&1
    cat "$OUT/env.txt"
}

if [ "$SMOKE" = 1 ]; then
    export NEW_TOKENS=${NEW_TOKENS:-16}
    SHAPE=tiny IMAGES=8 SIDE_ARGS="--stream-at 8 --stream 2"
else
    SHAPE=2b IMAGES=256 SIDE_ARGS="--stream-at 256 --stream 2"
fi

draft2b() {
    local base=()
    [ "$SMOKE" = 1 ] || base=(--baseline "$BASELINE")
    bench draft-2b 400 "$PY" bench/draft.py "$SHAPE" --tokenizer qwen --models "$MODELS" \
        --batches 1,0 --no-grammar-at 0 --confidence-at 0 --confidence-rounds 2 $SIDE_ARGS \
        "${base[@]}"
}

paths_in() {  # paths_in CHECKOUT: PYTHONPATH with that checkout in place of this one
    local paths=${PYTHONPATH:-$ROOT}
    echo "${paths/$ROOT/$1}"
}

job_in() {  # job_in NAME CHECKOUT: a whole job from that checkout's code, its element
    # palettes traced where that checkout can
    local name=$1 tree=$2 trace=()
    grep -q -- --trace-palettes "$tree/bench/draft_job.py" && trace=(--trace-palettes)
    # With the first batch prepared whole too, where that checkout can (its A/B in one call).
    grep -q -- '"job-whole"' "$tree/bench/draft_job.py" && trace+=(--passes job-whole,job,streamed)
    (cd "$tree" && PYTHONPATH=$(paths_in "$tree") bench "$name" 250 "$PY" bench/draft_job.py \
        "$SHAPE" --images "$IMAGES" --batch 0 --boxes 8 --tokenizer qwen --models "$MODELS" \
        --data "$WORK/job-data" "${trace[@]}")
}

click_in() {  # click_in NAME CHECKOUT
    local name=$1 tree=$2
    (cd "$tree" && PYTHONPATH=$(paths_in "$tree") bench "$name" 150 "$PY" \
        bench/click_to_caption.py "$SHAPE" --starts 2 --clicks 2 --wait "${CLICK_WAIT:-0}" \
        --models "$MODELS" \
        --folder "$WORK/model-$SHAPE")
}

cold() {
    [ "$SMOKE" = 1 ] && return  # cold_start.py drafts on the GPU only
    bench cold-2b 130 "$PY" bench/cold_start.py 2b --models "$MODELS" --folder "$WORK/model-2b"
}

qwen3() {
    local q
    for q in qwen3-8b qwen3-4b; do
        [ "$SMOKE" = 1 ] && q=tiny
        bench "draft-$q" 150 "$PY" bench/draft.py "$q" --models "$MODELS" --batches 0,1 \
            --no-grammar-at -1 --stream-at ""
        [ "$SMOKE" = 1 ] && break
    done
}

confidence() {  # the baseline, then 2B at one image and the automatic batch, that batch with
    # and without the confidences (alternating, one engine)
    local base=()
    [ "$SMOKE" = 1 ] || base=(--baseline "$BASELINE")
    bench confidence-2b 300 "$PY" bench/draft.py "$SHAPE" --tokenizer qwen --models "$MODELS" \
        --batches 1,0 --no-grammar-at -1 --confidence-at 0 --confidence-rounds 2 --stream-at "" \
        "${base[@]}"
}

confidence-only() {  # the automatic batch alone, with and without the confidences: a ratio
    # within one run, which needs no baseline
    bench confidence-only-2b 200 "$PY" bench/draft.py "$SHAPE" --tokenizer qwen \
        --models "$MODELS" --batches 0 --no-grammar-at -1 --confidence-at 0 \
        --confidence-rounds 2 --stream-at ""
}

big() {  # 7B (the Qwen2-VL shape) at the automatic batch and one image
    local shape=7b
    [ "$SMOKE" = 1 ] && shape=tiny
    bench "draft-$shape" 200 "$PY" bench/draft.py "$shape" --tokenizer qwen --models "$MODELS" \
        --batches 0,1 --no-grammar-at -1 --stream-at ""
}

pool() {  # the job's CPU side on this host's cores: the element palettes several ways, then
    # the pipeline around a stand-in engine drafting at 2B's rate
    local n=256
    [ "$SMOKE" = 1 ] && n=32
    bench job-cpu 200 "$PY" bench/job_cpu.py --drafts "$n" --rounds 2
    bench draft-pipeline 150 "$PY" bench/draft_pipeline.py --images "$n" --batch "$n"
}

jump() {  # jump-forward at batch 1: each step length's time, drafts off and on, projection
    local shape=2b
    [ "$SMOKE" = 1 ] && shape=tiny
    bench "jump-$shape" 240 "$PY" bench/jump_forward.py "$shape" --tokenizer qwen \
        --models "$MODELS" --rounds 3
}

jump-qwen3() {  # the same for Qwen3-VL-8B and -4B: a one-image draft and a real answer's
    # projected re-draft with jump-forward
    local q
    for q in qwen3-8b qwen3-4b; do
        [ "$SMOKE" = 1 ] && q=tiny
        bench "jump-$q" 200 "$PY" bench/jump_forward.py "$q" --models "$MODELS" --rounds 2
        [ "$SMOKE" = 1 ] && break
    done
}

memory() {  # what fills Qwen3-VL-8B's batch of 64 at its peak, and the prefill attention's
    # kernels at its shapes
    local q=qwen3-8b batch=64
    [ "$SMOKE" = 1 ] && q=tiny batch=4
    bench "memory-$q" 200 "$PY" bench/memory_peak.py "$q" --batch "$batch" --models "$MODELS"
}

prompt() {  # the prompt's attention (attention.py) on and off, alternating in one engine: 2B
    # and Qwen3-VL-8B ($PROMPT_SHAPES) at the automatic batch ($PROMPT_BATCH: 0)
    local q batch=${PROMPT_BATCH:-0}
    for q in ${PROMPT_SHAPES:-2b qwen3-8b}; do
        [ "$SMOKE" = 1 ] && q=tiny
        bench "prompt-attention-$q" 280 "$PY" bench/draft.py "$q" --tokenizer qwen \
            --models "$MODELS" --batches "$batch" --no-grammar-at -1 --stream-at "" \
            --prompt-attention-at "$batch" --confidence-rounds 2
        [ "$SMOKE" = 1 ] && break
    done
}

pieces() {  # Qwen3-VL-8B at the automatic batch with its prompts written in pieces where
    # that lets the batch grow (prefill.py, -1: the batch and rows it then chooses, its peak
    # and images/s), then all rows at once, then what fills a batch of 128 in pieces of 16
    local q=qwen3-8b rows=${PIECE_ROWS:--1}
    [ "$SMOKE" = 1 ] && q=tiny
    bench "pieces-$q" 240 "$PY" bench/draft.py "$q" --tokenizer qwen --models "$MODELS" \
        --batches 0 --no-grammar-at -1 --stream-at "" --prefill-rows "$rows"
    bench "whole-$q" 200 "$PY" bench/draft.py "$q" --tokenizer qwen --models "$MODELS" \
        --batches 0 --no-grammar-at -1 --stream-at ""
    # What fills the batch of 128 at its peak, written in pieces.
    local batch=128
    [ "$SMOKE" = 1 ] && batch=4
    bench "memory-pieces-$q" 200 "$PY" bench/memory_peak.py "$q" --batch "$batch" \
        --prefill-rows "${MEMORY_PIECE_ROWS:-16}" --models "$MODELS"
}

read-to-last() {  # Atelier's attention reading the cache up to the step's column against the
    # whole cache, alternating in one engine: 2B and Qwen3-VL-8B at the automatic batch
    local q
    for q in 2b qwen3-8b; do
        [ "$SMOKE" = 1 ] && q=tiny
        bench "read-to-last-$q" 280 "$PY" bench/draft.py "$q" --tokenizer qwen \
            --models "$MODELS" --batches 0 --no-grammar-at -1 --stream-at "" \
            --read-to-last-at 0 --confidence-rounds 2
        [ "$SMOKE" = 1 ] && break
    done
}

gputests() {  # the tests marked gpu, on the card
    [ "$SMOKE" = 1 ] && return
    # The files whose tests are marked gpu (others import what the GPU machine lacks).
    bench gpu-tests 240 "$PY" -m pytest -q -p no:cacheprovider -m gpu \
        tests/drafting/test_jump_forward.py tests/drafting/test_local_engine.py \
        tests/drafting/test_vision.py tests/drafting/test_kernels.py \
        tests/drafting/test_prompt_attention.py tests/drafting/test_prefill_pieces.py
}

for part in "$@"; do
    case $part in
    setup) setup ;;
    draft2b) draft2b ;;
    job) job_in job "$ROOT" ;;
    job-before) job_in job-before "$BEFORE" ;;
    click) click_in click "$ROOT" ;;
    click-before) click_in click-before "$BEFORE" ;;
    cold) cold ;;
    qwen3) qwen3 ;;
    confidence) confidence ;;
    confidence-only) confidence-only ;;
    jump) jump ;;
    jump-qwen3) jump-qwen3 ;;
    memory) memory ;;
    prompt) prompt ;;
    pieces) pieces ;;
    read-to-last) read-to-last ;;
    big) big ;;
    pool) pool ;;
    gputests) gputests ;;
    *) echo "unknown part $part" | tee -a "$LOG" ;;
    esac
done
