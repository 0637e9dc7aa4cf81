#!/usr/bin/env bash
# Runs vlkit's GPU checks and benches on a GPU machine that has no Rust toolchain (the lent
# machine of `docs/performance.md`), from prebuilt binaries, and PyTorch's twins beside them.
#
# Build here (see docs/performance.md, "GPU runs"), then on the GPU machine, from the repo root:
#
#   benches/gpu/device.sh info agree enc:cuda:f32 torch-enc:fp32 ...
#
# Phases (any number, run in order, each under a time limit so that a slow one cannot eat the
# whole call; every phase's output is appended to $OUT/device.log and target/bench is re-archived
# into $OUT/bench.tgz after each):
#   info                    nvidia-smi, the Vulkan ICD, torch / transformers / peft versions
#   agree                   the backend-agreement test (wgpu and cuda vs flex, 1e-3)
#   enc:DEVICE:DTYPE        the encoders bench (DEVICE cuda|wgpu, DTYPE f32|bf16|f16)
#   steps:DEVICE            the steps bench (LoRA step, CLIP loss at 4096), f32
#   prompting:DEVICE        the CoOp-step bench, f32
#   torch-enc:DTYPE         benches/torch/bench_encoders.py on cuda (DTYPE fp32|bf16|fp16)
#   ops:DEVICE:DTYPE        the ops bench (the operations of one ViT-B/32 layer, batch 32)
#   torch-ops:DTYPE         benches/torch/bench_ops.py on cuda
#   torch-steps             benches/torch/bench_steps.py on cuda
#   torch-prompting         benches/torch/bench_prompting.py on cuda
#
# Binaries are read from .gpu/bin/{encoders,steps,prompting,ops,it}, unpacked from .gpu/NAME.xz (at
# most 64 MiB travels per call, so one binary per call); Vulkan's loader from the .deb files in
# .gl/ (the device tool's README).
set -uo pipefail
OUT=${OUT:-/tmp/vl-device-out}
BIN=.gpu/bin
LOG="$OUT/device.log"
mkdir -p "$OUT" target/bench
# Criterion's own reports are not needed back; keep target/bench small.
export CRITERION_HOME=/tmp/criterion

setup() {
    # The binaries were built in /work/main and find their fixtures under that path.
    if [ ! -e /work/main ]; then mkdir -p /work && ln -sfn "$PWD" /work/main; fi
    # Each binary travels xz-compressed (.gpu/NAME.xz); Python's lzma unpacks it (no xz needed).
    mkdir -p "$BIN"
    for f in .gpu/*.xz; do
        [ -e "$f" ] || continue
        local name
        name=$(basename "$f" .xz)
        [ -x "$BIN/$name" ] && continue
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
            "$f" "$BIN/$name" && chmod +x "$BIN/$name" || return 1
    done
    if ls .gl/*.deb > /dev/null 2>&1 && ! ldconfig -p | grep -q libvulkan.so.1; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
}

phase() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$LOG"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
    tar czf "$OUT/bench.tgz" target/bench 2>/dev/null
}

setup || { echo "setup failed" | tee -a "$LOG"; exit 1; }
if [ -f .gpu/REVISION ]; then export VL_BENCH_GIT_REVISION=$(cat .gpu/REVISION); fi
GPU_CRITERION=(--bench --warm-up-time 1 --measurement-time 3)
for arg in "$@"; do
    IFS=: read -r what a b <<< "$arg"
    case $what in
        info)
            phase info 60 bash -c 'nvidia-smi; ls /usr/local/nvidia/share/vulkan/icd.d/ 2>&1; python3 -c "import torch, transformers, peft; print(\"torch\", torch.__version__, \"transformers\", transformers.__version__, \"peft\", peft.__version__, torch.cuda.get_device_name(0))"' ;;
        agree)
            phase agree 300 "$BIN/it" backends --nocapture --test-threads 1 ;;
        enc)
            phase "enc $a $b" "${ENC_LIMIT:-420}" env VL_BENCH_DEVICE="$a" VL_BENCH_DTYPE="$b" "$BIN/encoders" "${GPU_CRITERION[@]}" ;;
        steps)
            phase "steps $a" 300 env VL_BENCH_DEVICE="$a" "$BIN/steps" "${GPU_CRITERION[@]}" ;;
        prompting)
            phase "prompting $a" 300 env VL_BENCH_DEVICE="$a" "$BIN/prompting" "${GPU_CRITERION[@]}" ;;
        torch-enc)
            suffix=$([ "$a" = fp32 ] && echo "" || echo "-$([ "$a" = fp16 ] && echo f16 || echo "$a")")
            phase "torch-enc $a" 300 python3 benches/torch/bench_encoders.py --device cuda --dtype "$a" \
                --batches 1,32,256 --text-batches 64,1024 --iters 30 --warmup 5 \
                --json-out "target/bench/torch$suffix.json" ;;
        ops)
            phase "ops $a $b" 300 env VL_BENCH_DEVICE="$a" VL_BENCH_DTYPE="$b" "$BIN/ops" "${GPU_CRITERION[@]}" ;;
        torch-ops)
            suffix=$([ "$a" = fp32 ] && echo "" || echo "-$([ "$a" = fp16 ] && echo f16 || echo "$a")")
            phase "torch-ops $a" 200 python3 benches/torch/bench_ops.py --device cuda --dtype "$a" \
                --json-out "target/bench/torch-ops-cuda$suffix.json" ;;
        torch-steps)
            phase torch-steps 300 python3 benches/torch/bench_steps.py --device cuda \
                --json-out target/bench/torch-steps.json ;;
        torch-prompting)
            phase torch-prompting 300 python3 benches/torch/bench_prompting.py --device cuda \
                --iters 20 --warmup 3 --json-out target/bench/torch-prompting.json ;;
        *)
            echo "unknown phase $arg" | tee -a "$LOG" ;;
    esac
done
