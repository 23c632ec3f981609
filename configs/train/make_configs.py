#!/usr/bin/env python3
"""Writes configs/train/rl/<model>/<dataset>/<setup>.yml from the reference system's config
catalogue (original-system.md §11): DeepScaleR runs (§11.1) and the legacy GSM8K / MATH runs
(§11.2). Run from the repository root: `python3 configs/train/make_configs.py`.
Every written file is parsed by the trainer's tests (trainer/tests/train.rs)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent / "rl"

# model -> (path, template, stop token, max_seq_length, {setup: (lr, G, extra)})
DEEPSCALER = {
    "qwen2.5-math-1.5b": ("models/Qwen2.5-Math-1.5B", "qwen_math", "<|im_end|>", 4096, {
        "steering": (1e-3, 16, {}), "full_model": (2e-6, 16, {}), "lora": (1e-4, 16, {"lora_rank": 4}),
        "lora-1": (1e-4, 16, {"lora_rank": 1}), "steering_rank": (5e-3, 16, {"steering_rank": 1})}),
    "qwen2.5-math-7b": ("models/Qwen2.5-Math-7B", "qwen_math", "<|im_end|>", 4096, {
        "steering": (1e-3, 16, {}), "full_model": (1e-6, 16, {}), "lora": (1e-4, 16, {"lora_rank": 4}),
        "lora-1": (1e-4, 16, {"lora_rank": 1}), "steering_rank": (5e-3, 16, {"steering_rank": 1}),
        "steering_at_place": (5e-2, 16, {"steering_at_place": "model.layers.24.mlp"})}),
    "qwen2.5-1.5b": ("models/Qwen2.5-1.5B", "qwen_math", "<|im_end|>", 8192, {
        "steering": (1e-3, 64, {}), "full_model": (1e-6, 64, {}),
        "lora": (1e-4, 16, {"lora_rank": 4, "lora_init": "pissa"}),
        "lora-1": (5e-4, 16, {"lora_rank": 1, "lora_init": "pissa"}), "steering_rank": (5e-3, 16, {"steering_rank": 1})}),
    "qwen2.5-7b": ("models/Qwen2.5-7B", "qwen_math", "<|im_end|>", 8192, {
        "steering": (1e-3, 16, {}), "full_model": (1e-6, 16, {}),
        "lora": (1e-4, 16, {"lora_rank": 4, "lora_init": "pissa"}),
        "lora-1": (5e-4, 16, {"lora_rank": 1, "lora_init": "pissa"}), "steering_rank": (5e-3, 16, {"steering_rank": 1})}),
    "llama3.1-8b": ("models/Llama-3.1-8B", "r1", "<|end_of_text|>", 8192, {
        "steering": (3e-4, 64, {}), "full_model": (1e-6, 64, {}),
        "lora": (1e-4, 32, {"lora_rank": 4, "template_type": "qwen_math"}),
        "lora-1": (5e-4, 64, {"lora_rank": 1}),
        "steering_rank": (1e-4, 32, {"steering_rank": 1, "template_type": "qwen_math"})}),
    "llama3.1-8b-chat": ("models/Llama-3.1-8B-Instruct", "qwen_math", "<|eot_id|>", 8192, {
        "steering": (8e-5, 16, {}), "full_model": (1e-6, 16, {}), "lora": (5e-5, 16, {"lora_rank": 4}),
        "lora-1": (8e-5, 16, {"lora_rank": 1}), "steering_rank": (8e-5, 16, {"steering_rank": 1}),
        "steering_at_place": (5e-3, 16, {"steering_at_place": "model.layers.28.mlp"})}),
    "olmo2-7b": ("models/OLMo-2-1124-7B-SFT", "qwen_math", "<|endoftext|>", 4096, {
        "steering": (5e-5, 16, {}), "full_model": (1e-6, 16, {}), "lora": (1e-4, 16, {"lora_rank": 4}),
        "lora-1": (3e-4, 16, {"lora_rank": 1}), "steering_rank": (1e-4, 16, {"steering_rank": 1})}),
}

# Legacy P1 runs (§11.2): model -> {dataset: {setup: lr}}, G, micro-batch, epochs.
LEGACY = {
    "qwen2.5-1.5b": (64, 8, 3, {"gsm8k": {"steering": 5e-4, "full_model": 9e-6, "lora": 5e-4, "lora-1": 5e-4,
                                          "steering_rank": 5e-4},
                               "math": {"steering": 5e-4}}),
    "qwen2.5-math-1.5b": (16, 8, 3, {"gsm8k": {"steering": 2e-3, "full_model": 2e-5, "lora": 5e-4},
                                    "math": {"steering": 1e-3}}),
    "llama3.1-8b": (64, 1, 2, {"gsm8k": {"steering": 5e-4, "full_model": 5e-6}, "math": {"steering": 5e-4}}),
    "llama3.1-8b-chat": (16, 1, 3, {"gsm8k": {"steering": 3e-4, "full_model": 1e-6}, "math": {"steering": 1e-4, "full_model": 1e-6}}),
}
LEGACY_EXTRA = {"steering_rank": {"steering_rank": 28}, "lora": {"lora_rank": 4}, "lora-1": {"lora_rank": 1}}
LEGACY_DATA = {"gsm8k": "data/gsm8k/train.jsonl", "math": "../shared/data/benchmarks/math_train.jsonl"}


def setup_key(setup):
    return {"lora-1": "lora"}.get(setup, setup)


def render(fields, comment):
    lines = [f"# {comment}"]
    for key, value in fields.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, float):
            value = repr(value)
        elif isinstance(value, str) and any(c in value for c in ":<>|#{}"):
            value = f'"{value}"'
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def write(model, dataset, setup, fields, comment):
    path = ROOT / model / dataset / f"{setup}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(fields, comment))


def main():
    for model, (path, template, stop, max_len, setups) in DEEPSCALER.items():
        for setup, (lr, g, extra) in setups.items():
            fields = {"model_path": path, "dataset_path": "data/deep_scale_r-preview-dataset",
                      "training_setup": setup_key(setup), "learning_rate": lr, "seed": 0,
                      "prompts_per_step": 128, "num_generations": g, "batch_size": 1,
                      "num_train_epochs": 1, "warmup_ratio": 0.03, "max_grad_norm": 2.0,
                      "max_seq_length": max_len, "num_evals": 6, "save_total_limit": 5,
                      "reward_processor_type": "rloo", "kl_coef": 0.0, "generation_temperature": 1.0,
                      "top_p": 1.0, "top_k": -1, "stop_token": stop, "template_type": template,
                      "precision": "bf16", "output_dir": "train_output"}
            fields.update(extra)
            write(model, "deepscaler", setup, fields, f"{model} on DeepScaleR, {setup} (reference §11.1)")
    for model, (g, batch, epochs, datasets) in LEGACY.items():
        path, template, stop, _, _ = DEEPSCALER[model]
        for dataset, setups in datasets.items():
            for setup, lr in setups.items():
                fields = {"model_path": path, "dataset_path": LEGACY_DATA[dataset], "dataset_name": dataset,
                          "training_setup": setup_key(setup), "learning_rate": lr, "seed": 0,
                          "prompts_per_step": 32, "num_generations": g, "batch_size": batch,
                          "num_train_epochs": epochs, "warmup_ratio": 0.03, "max_grad_norm": 2.0,
                          "max_seq_length": 1024, "num_evals": 6, "save_total_limit": 5,
                          "reward_processor_type": "grpo_no_std", "kl_coef": 0.01,
                          "kl_type": "shulman_token_level", "stop_token": stop,
                          "template_type": template, "precision": "bf16", "output_dir": "train_output"}
                fields.update(LEGACY_EXTRA.get(setup, {}))
                if model == "llama3.1-8b-chat" and dataset == "gsm8k" and setup == "steering":
                    fields["steering_at_layer"] = 16
                write(model, dataset, setup, fields, f"{model} on {dataset}, {setup} (legacy P1 run, reference §11.2)")
    # Models the reference never ran on GSM8K / MATH: the legacy recipe of §11.2 (G = 16, micro-batch
    # 8, 3 epochs, GRPO without std, k3 KL 0.01) with the model's DeepScaleR steering learning rate.
    for model, (path, template, stop, _, setups) in DEEPSCALER.items():
        if model in LEGACY:
            continue
        for dataset in LEGACY_DATA:
            fields = {"model_path": path, "dataset_path": LEGACY_DATA[dataset], "dataset_name": dataset,
                      "training_setup": "steering", "learning_rate": setups["steering"][0], "seed": 0,
                      "prompts_per_step": 32, "num_generations": 16, "batch_size": 8,
                      "num_train_epochs": 3, "warmup_ratio": 0.03, "max_grad_norm": 2.0,
                      "max_seq_length": 1024, "num_evals": 6, "save_total_limit": 5,
                      "reward_processor_type": "grpo_no_std", "kl_coef": 0.01,
                      "kl_type": "shulman_token_level", "stop_token": stop,
                      "template_type": template, "precision": "bf16", "output_dir": "train_output"}
            write(model, dataset, "steering", fields,
                  f"{model} on {dataset}, steering (no reference run: the §11.2 recipe with the model's §11.1 learning rate)")


if __name__ == "__main__":
    main()
