#!/usr/bin/env bash
# Run on the device machine (nvidia-h200, or nvidia-h200-x2/x4 for the multi-GPU steps) from the
# repository root, carrying `.gl` (Vulkan loader debs) and `.dev` (the stripped, gzipped `trainer`
# binary as .dev/trainer.gz, built with `--release`: a dev build's decode steps were 1.7× slower,
# docs/performance.md; and ../shared/bench/torch_baseline.py). Each stage has its own time
# limit in seconds (CHECK_S, KERN_S, RL_S, GEN_S, GENU_S, GENS_S, GENN_S, GENR_S, GENA_S, GENV_S, GENF_S, GENK_S, GENCS_S, TRAIN_S, TRAIN_WG_S, TRAINF_S, GEN7_S, TRAIN7_S, TORCH_S,
# PROFILE_S, PROFILE_DK_S, PROFILE_KERN_S; 0 skips
# a stage; TRAIN_SETUPS picks the 1.5B micro-steps, TORCH_SHAPES the PyTorch shapes)
# so a slow one cannot eat the others, and stages append to one file each in $OUT (the device tool
# returns at most 8 files):
#   kernels.log        `bench kernels --checks-only` on the 1.5B shape (CHECK_S: the trainer's
#                      kernels against burn's operations, no product timed), then `bench kernels` on the
#                      1.5B shape (KERN_S, more than 240 s) and the 7B shape (KERN7_S): the
#                      products of every linear map at 64 and 4 × 1024 rows, fused against
#                      materialised attention (time and relative difference)
#   rl_step.log        data-parallel GRPO steering steps, 1.5B shape, on 1 and then every GPU of
#                      RL_DEVICES (default: all; one JSON line per step as it ends, then one
#                      summary per worker count)
#   generate.log       generation, 64 × 256 + 256 tokens: the 1.5B shape with a decode-step
#                      profile and the copy-bandwidth roofline (GEN_S), every decode step issued
#                      launch by launch instead of replayed from a recorded step (GENU_S), steered (GENS_S), with
#                      RMSNorms (GENN_S), the rotary embedding (GENR_S), the decode step's
#                      attention (GENA_S) or its products (GENK_S) as burn's operations instead
#                      of the trainer's kernels, the 1.5B shape with budgets from 32 to 256
#                      tokens, so that the batch halves (GENV_S), the 1.5B shape with fused
#                      attention (GENF_S), with burn's sampling operations instead of the
#                      trainer's sampling kernel (GENCS_S), then the 7B shape (GEN7_S)
#   train_step.log     the RL micro-step, 4 × 1024 tokens: steering, LoRA and the full model on the
#                      1.5B shape (TRAIN_S each), steering keeping the whole graph (TRAIN_WG_S),
#                      steering with fused attention (TRAINF_S), then steering on the 7B
#                      shape (TRAIN7_S)
#   torch.log, torch_baseline.json   PyTorch/transformers' peer numbers for both shapes
#   cubecl_profile.log a per-kernel profile (CubeCL's profiling log) of a few decode steps
#                      (PROFILE_S, with PROFILE_ARGS added to `bench generate`; steps are issued
#                      launch by launch, as CubeCL cannot profile inside a recorded step), or of `bench
#                      kernels` at 64 rows (PROFILE_KERN_S)
#   cubecl_profile_decode_kernel.log   the same decode steps with burn's products instead of the
#                      decode-product kernel (PROFILE_DK_S); scripts/device/profile_summary.py
#                      sums either by kernel
#   env.txt            GPUs, driver, commit, and each stage's exit status and seconds
# Every new process compiles its kernels and probes the device (a minute or more on a fresh
# machine, docs/performance.md); autotune results are cached in target/environment, so later
# processes of the same call start faster.
set -x
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
# TRAINER_GZ picks the binary (default .dev/trainer.gz); it runs as /tmp/<its name>, which the
# stage headers name, so that runs of two builds can share the logs.
T=/tmp/$(basename ${TRAINER_GZ:-.dev/trainer.gz} .gz)
gunzip -c ${TRAINER_GZ:-.dev/trainer.gz} > $T && chmod +x $T
V="--backend vulkan --dtype f16"
{ nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv; git log -1 --format=%H; } >> $OUT/env.txt 2>&1
stage() { # stage SECONDS FILE COMMAND...
  local secs=$1 file=$2 start=$SECONDS; shift 2
  [ "$secs" = 0 ] && return
  echo "# $(date -u +%FT%TZ) CUBECL_WGPU_MAX_TASKS=${CUBECL_WGPU_MAX_TASKS:-32} $*" >> "$OUT/$file"
  timeout "$secs" "$@" >> "$OUT/$file" 2>&1; echo "$file rc $? $((SECONDS - start)) s: $*" >> $OUT/env.txt
}
S15=qwen2.5-math-1.5b S7=qwen2.5-math-7b
GEN="bench generate --batch 64 --prompt-len 256 --new-tokens 256"
TRAIN="bench train-step --micro-batch 4 --seq-len 1024 --repeats 4"
stage ${CHECK_S:-0} kernels.log $T bench kernels --shape $S15 --checks-only $V
stage ${KERN_S:-0} kernels.log $T bench kernels --shape $S15 --iterations 8 $V
stage ${KERN7_S:-0} kernels.log $T bench kernels --shape $S7 --iterations 8 $V
stage ${RL_S:-240} rl_step.log $T bench rl-step --shape $S15 --devices ${RL_DEVICES:-all} --prompts 8 --generations 4 \
  --prompt-len 128 --new-tokens 32 --micro-batch 8 --steps 2 $V
stage ${GEN_S:-100} generate.log $T $GEN --shape $S15 --profile $V
stage ${GENU_S:-0} generate.log $T $GEN --shape $S15 --unrecorded-steps $V
stage ${GENS_S:-0} generate.log $T $GEN --shape $S15 --steered $V
stage ${GENN_S:-0} generate.log $T $GEN --shape $S15 --composed-norm $V
stage ${GENR_S:-0} generate.log $T $GEN --shape $S15 --composed-rotary $V
stage ${GENA_S:-0} generate.log $T $GEN --shape $S15 --composed-attention $V
stage ${GENV_S:-0} generate.log $T $GEN --shape $S15 --varied-lengths $V
stage ${GENF_S:-0} generate.log $T $GEN --shape $S15 --fused-attention $V
stage ${GENK_S:-0} generate.log $T $GEN --shape $S15 --burn-products $V
stage ${GENCS_S:-0} generate.log $T $GEN --shape $S15 --composed-sampling $V
for setup in ${TRAIN_SETUPS:-steering lora full-model}; do
  stage ${TRAIN_S:-100} train_step.log $T $TRAIN --shape $S15 --setup $setup $V
done
stage ${TRAIN_WG_S:-0} train_step.log $T $TRAIN --shape $S15 --setup steering --whole-graph $V
stage ${TRAINF_S:-0} train_step.log $T $TRAIN --shape $S15 --setup steering --fused-attention $V
stage ${GEN7_S:-0} generate.log $T $GEN --shape $S7 $V
stage ${TRAIN7_S:-0} train_step.log $T $TRAIN --shape $S7 --setup steering $V
PYTHONUNBUFFERED=1 stage ${TORCH_S:-90} torch.log python3 .dev/torch_baseline.py ${TORCH_SHAPES:-$S15}
if [ "${PROFILE_S:-0}" != 0 ]; then
  CUBECL_DEBUG_OPTION=profile CUBECL_DEBUG_LOG=/tmp/cubecl.log timeout ${PROFILE_S} $T bench generate \
    --shape $S15 --batch 64 --prompt-len 256 --new-tokens 6 --unrecorded-steps $PROFILE_ARGS $V >> $OUT/env.txt 2>&1
  tail -c 6000000 /tmp/cubecl.log > $OUT/cubecl_profile.log
fi
if [ "${PROFILE_DK_S:-0}" != 0 ]; then
  CUBECL_DEBUG_OPTION=profile CUBECL_DEBUG_LOG=/tmp/cubecl_dk.log timeout ${PROFILE_DK_S} $T bench generate \
    --shape $S15 --batch 64 --prompt-len 256 --new-tokens 6 --unrecorded-steps --burn-products $V >> $OUT/env.txt 2>&1
  tail -c 6000000 /tmp/cubecl_dk.log > $OUT/cubecl_profile_decode_kernel.log
fi
if [ "${PROFILE_KERN_S:-0}" != 0 ]; then
  CUBECL_DEBUG_OPTION=profile CUBECL_DEBUG_LOG=/tmp/cubecl_kern.log timeout ${PROFILE_KERN_S} $T bench kernels \
    --shape $S15 --micro-batch 1 --seq-len 64 --iterations 4 $V >> $OUT/env.txt 2>&1
  tail -c 6000000 /tmp/cubecl_kern.log > $OUT/cubecl_profile.log
fi
cat $OUT/env.txt; tail -c 1500 $OUT/*.log
