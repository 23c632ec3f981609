#!/usr/bin/env bash
# Run on the device machine from the repository root, carrying `.gl` (Vulkan loader debs) and `.dev`
# (the stripped, gzipped `trainer` binary as .dev/trainer.gz and the first 128 rows of MATH-500 as
# .dev/bench/math500.jsonl).
# GPU evaluation throughput: random Qwen2.5-Math-1.5B shape, MATH-500's first 128 prompts, 256 new tokens.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
gunzip -c .dev/trainer.gz > /tmp/trainer && chmod +x /tmp/trainer
timeout 500 /tmp/trainer eval --config configs/eval/qwen2.5-math-1.5b.yml --model trainer/tests/fixtures/qwen2 \
  --random-weights qwen2.5-math-1.5b --benchmarks math500 --limit 128 --max-new-tokens 256 --batch-rows 64 \
  --backend vulkan --dtype f16 --warmup --data-dir .dev/bench --results $OUT/eval > $OUT/eval.log 2>&1
echo "eval rc $?"; tail -c 1500 $OUT/eval.log
