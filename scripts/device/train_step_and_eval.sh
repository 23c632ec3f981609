#!/usr/bin/env bash
# Run on the device machine from the repository root, carrying `.gl` (Vulkan loader debs) and `.dev`
# (the stripped, gzipped `trainer` binary as .dev/trainer.gz and the first 128 rows of MATH-500 as
# .dev/bench/math500.jsonl).
# GPU measurements on the device machine: evaluation tokens/s (random Qwen2.5-Math-1.5B shape, MATH-500's
# first 128 prompts, 256 new tokens) and a GRPO steering step at the 1.5B shape (vocabulary of the tiny
# fixture tokenizer), both on Vulkan.
set -x
S=.dev/bench
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
gunzip -c .dev/trainer.gz > /tmp/trainer && chmod +x /tmp/trainer
nvidia-smi --query-gpu=name,memory.total --format=csv
[ -d /tmp/qwen15 ] || python3 - <<'PY'
import json, shutil, torch, transformers
from pathlib import Path
out = Path("/tmp/qwen15"); out.mkdir(exist_ok=True)
cfg = transformers.Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
    num_key_value_heads=2, vocab_size=400, max_position_embeddings=4096, rope_theta=10000.0, tie_word_embeddings=True,
    eos_token_id=2, bos_token_id=None)
torch.manual_seed(0)
m = transformers.Qwen2ForCausalLM(cfg).to(torch.float16)
m.save_pretrained(out)
for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"]:
    shutil.copy(Path("trainer/tests/fixtures/qwen2") / f, out / f)
PY
cat > /tmp/train.yml <<YML
model_path: /tmp/qwen15
dataset_path: $PWD/.dev/bench/math500.jsonl
output_dir: $OUT/train
training_setup: steering
learning_rate: 0.001
prompts_per_step: 8
num_generations: 8
batch_size: 4
max_seq_length: 256
warmup_ratio: 0.0
max_steps: 1
reward_processor_type: reinforce
precision: f16
rollout_batch_size: 64
YML
timeout 330 /tmp/trainer train --config /tmp/train.yml --backend vulkan --json > $OUT/train.log 2>&1; echo train rc $?; tail -4 $OUT/train.log
RUST_BACKTRACE=1 timeout 150 /tmp/trainer eval --config configs/eval/qwen2.5-math-1.5b.yml --model trainer/tests/fixtures/qwen2 \
  --random-weights qwen2.5-math-1.5b --benchmarks math500 --limit 128 --max-new-tokens 256 --batch-rows 32 \
  --backend vulkan --dtype f16 --warmup --data-dir $S --results $OUT/eval128 > $OUT/eval.log 2>&1; echo eval rc $?; grep -v '^      ' $OUT/eval.log | tail -25
