#!/usr/bin/env bash
# Run on the device machine (nvidia-h200, or nvidia-h200-x2 for the 1-vs-2-GPU steps) from the repository root, carrying `.gl` (Vulkan loader
# debs) and `.dev` (the stripped, gzipped `trainer` binary as .dev/trainer.gz and
# ../shared/bench/torch_baseline.py). Each stage has its own time limit (seconds, overridable:
# RL_S, GEN_S, TRAIN_S, TORCH_S, PROFILE_S; 0 skips a stage) so a slow one cannot eat the others,
# and writes one file to $OUT (the device tool returns at most 8):
#   rl_step.log        data-parallel GRPO steering steps, 1.5B shape, on 1 and then every GPU of
#                      RL_DEVICES (default: all)
#                      (one JSON line per step as it ends, then one summary per worker count)
#   generate.log       generation with a decode-step profile and the copy-bandwidth roofline
#   train_step.log     the bias-only RL micro-step, 4 × 1024 tokens
#   torch.log, torch_baseline.json   PyTorch/transformers' peer numbers on the same machine
#   cubecl_profile.log a per-kernel profile of a few decode steps (CubeCL's profiling log)
#   env.txt            GPUs, driver, commit
# Every new process compiles its kernels, autotunes and probes the device (minutes on a fresh
# machine: docs/performance.md), so give the first stages room.
set -x
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
gunzip -c .dev/trainer.gz > /tmp/trainer && chmod +x /tmp/trainer
T=/tmp/trainer
V="--backend vulkan --dtype f16"
{ nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv; git log -1 --format=%H; } > $OUT/env.txt 2>&1
stage() { # stage SECONDS FILE COMMAND...
  local secs=$1 file=$2; shift 2
  [ "$secs" = 0 ] && return
  timeout "$secs" "$@" > "$OUT/$file" 2>&1; echo "$file rc $?" >> $OUT/env.txt
}
stage ${RL_S:-300} rl_step.log $T bench rl-step --shape qwen2.5-math-1.5b --devices ${RL_DEVICES:-all} --prompts 8 --generations 4 \
  --prompt-len 128 --new-tokens 32 --micro-batch 8 --steps 2 $V
stage ${GEN_S:-120} generate.log $T bench generate --shape qwen2.5-math-1.5b --batch 64 --prompt-len 256 --new-tokens 64 --profile $V
stage ${TRAIN_S:-120} train_step.log $T bench train-step --shape qwen2.5-math-1.5b --setup steering --micro-batch 4 --seq-len 1024 --repeats 2 $V
PYTHONUNBUFFERED=1 stage ${TORCH_S:-90} torch.log python3 .dev/torch_baseline.py qwen2.5-math-1.5b
if [ "${PROFILE_S:-40}" != 0 ]; then
  CUBECL_DEBUG_OPTION=profile CUBECL_DEBUG_LOG=/tmp/cubecl.log timeout ${PROFILE_S:-40} $T bench generate \
    --shape qwen2.5-math-1.5b --batch 64 --prompt-len 256 --new-tokens 6 $V >> $OUT/env.txt 2>&1
  tail -c 6000000 /tmp/cubecl.log > $OUT/cubecl_profile.log
fi
cat $OUT/env.txt; tail -c 1500 $OUT/*.log
