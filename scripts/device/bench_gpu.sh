#!/usr/bin/env bash
# Run on the device machine (nvidia-h200-x2) from the repository root, carrying `.gl` (Vulkan loader
# debs) and `.dev` (the stripped, gzipped `trainer` binary as .dev/trainer.gz and
# ../shared/bench/torch_baseline.py). Every stage has its own time limit, so a slow one cannot eat
# the others; results go to $OUT.
#   1. data-parallel GRPO steering steps at the Qwen2.5-Math-1.5B shape on 1 and 2 GPUs
#   2. generation with a decode-step profile and the copy-bandwidth roofline (1.5B shape)
#   3. the bias-only RL micro-step, 4 × 1024 tokens (1.5B shape)
#   4. PyTorch/transformers' peer numbers on the same machine (1.5B shape)
#   5. a per-kernel profile of a few decode steps (CubeCL's profiling log)
set -x
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
# Cold starts (kernel compilation, autotuning) dominated earlier runs; minimal autotuning keeps
# them short. Every timed number below is taken after a warm-up.
export CUBECL_AUTOTUNE_LEVEL=minimal
gunzip -c .dev/trainer.gz > /tmp/trainer && chmod +x /tmp/trainer
T=/tmp/trainer
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv > $OUT/gpu.txt
git log -1 --format=%H > $OUT/commit.txt 2>/dev/null
V="--backend vulkan --dtype f16"
timeout 190 $T bench rl-step --shape qwen2.5-math-1.5b --devices 0,1 --prompts 8 --generations 4 \
  --prompt-len 128 --new-tokens 32 --micro-batch 8 --steps 2 $V > $OUT/rl_step.jsonl 2> $OUT/rl_step.err
echo "rl-step rc $?"
timeout 80 $T bench generate --shape qwen2.5-math-1.5b --batch 64 --prompt-len 256 --new-tokens 64 --profile $V \
  > $OUT/generate.jsonl 2> $OUT/generate.err
echo "generate rc $?"
timeout 60 $T bench train-step --shape qwen2.5-math-1.5b --setup steering --micro-batch 4 --seq-len 1024 --repeats 2 $V \
  > $OUT/train_step.jsonl 2> $OUT/train_step.err
echo "train-step rc $?"
PYTHONUNBUFFERED=1 timeout 90 python3 .dev/torch_baseline.py qwen2.5-math-1.5b > $OUT/torch.log 2>&1
echo "torch rc $?"
CUBECL_DEBUG_OPTION=profile CUBECL_DEBUG_LOG=/tmp/cubecl.log timeout 40 $T bench generate --shape qwen2.5-math-1.5b \
  --batch 64 --prompt-len 256 --new-tokens 6 $V > $OUT/generate_profiled.jsonl 2> $OUT/generate_profiled.err
echo "profiled rc $?"
tail -c 6000000 /tmp/cubecl.log > $OUT/cubecl_profile.log
ls -la $OUT; cat $OUT/*.jsonl | cut -c1-1500; tail -3 $OUT/*.err
