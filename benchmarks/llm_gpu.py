"""`llm_demo.py --device cuda` in bf16: sampling and training speed, and peak GPU memory, per algorithm,
critic and gradient checkpointing. Writes results/gpu/llm-cuda.json; benchmarks/gpu.py renders it into
results/gpu.md.

The GPU machine this ran on has no internet and only small files reach it, so the model is BUILT from a
public config with RANDOM weights:
  - qwen0.5b: Qwen2.5-0.5B's shapes (24 layers, hidden 896, 14 query / 2 key-value heads, MLP 4,864,
    vocabulary 151,936, tied embeddings): the size of the hub model a course GPU would run;
  - smollm2: the default model's own config (SmolLM2-135M, read from --tokenizer's folder).
The tokenizer is the default model's (49,152 tokens; a sampled id beyond it decodes to nothing). Random
weights almost never emit EOS, so every response runs to --max-new-tokens: the timings are at a fixed
response length, and the rewards (hence accuracy) mean nothing here -- speed and memory only.

Per run: one `python llm_demo.py` process for --steps steps; the first step is a warm-up (CUDA context,
kernel selection) and the medians are over the rest.
    sampling tokens/s  = generated tokens / time in generate()
    training tokens/s  = generated tokens / (step time - sampling time): advantages + the clipped update
    peak GPU memory    = torch.cuda.max_memory_allocated over the whole process (evaluation included)

    python benchmarks/llm_gpu.py --tokenizer ~/.cache/sppo/SmolLM2-135M-Instruct
    python benchmarks/llm_gpu.py --tokenizer DIR --shapes smollm2 --settings demo   # a subset
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
from benchmarks.runner import RESULTS, Run, launch, provenance, save_json  # noqa: E402

QWEN_05B = dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
                rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu")
SETTINGS = {  # the demo's own batch, and a wide one a GPU is for
    "demo": [],                                                                  # 16 responses x 24 tokens
    "wide": ["--batch-size", "128", "--max-new-tokens", "128", "--micro-batch", "16"],
}
RUNS = {
    "sppo": [],
    "sppo-critic-same": ["--critic", "same"],
    "grpo": ["--algo", "grpo", "--group-size", "8"],
    "ppo": ["--algo", "ppo", "--ratio", "token"],
    "ppo-critic-same": ["--algo", "ppo", "--ratio", "token", "--critic", "same"],
    "sppo-gc": ["--grad-checkpointing"],
    "sppo-critic-same-gc": ["--critic", "same", "--grad-checkpointing"],
    "ppo-critic-same-gc": ["--algo", "ppo", "--ratio", "token", "--critic", "same", "--grad-checkpointing"],
}
WIDE_RUNS = ["sppo", "grpo", "ppo", "sppo-gc", "ppo-critic-same", "ppo-critic-same-gc"]


def build_model(shape: str, tokenizer: str, folder: str) -> str:
    """A transformers folder: the config's shapes, random weights, the default model's tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tokenizer)
    if shape == "qwen0.5b":
        config = AutoConfig.for_model(**QWEN_05B, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id)
    else:
        config = AutoConfig.from_pretrained(tokenizer)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def time_run(model: str, flags: list[str], steps: int, workdir: str, device: str = "cuda") -> dict:
    out = launch(Run("llm_gpu", ["--model", model, "--device", device, "--steps", str(steps), "--n-eval", "8",
                                 "--eval-k", "1", "--log-every", "0", "--save-every", "1000", *flags],
                     script="llm_demo.py"), check=False, scratch=workdir)
    return {"error": out.error[:300]} if out.error else speeds(out.rows)


def speeds(rows: list[dict]) -> dict:
    """Medians over progress.csv's rows after the first (the warm-up): see the module's docstring."""
    sample, train, length, step = [], [], [], []
    for prev, row in zip(rows, rows[1:]):
        tokens = float(row["gen_tokens"]) - float(prev["gen_tokens"])
        gen_s = tokens / float(row["gen_tokens_per_s"])
        step_s = float(row["wall_time"]) - float(prev["wall_time"])
        step.append(step_s)
        sample.append(tokens / gen_s)
        train.append(tokens / (step_s - gen_s))
        length.append(float(row["response_len"]))
    return {"sample_tok_s": statistics.median(sample), "train_tok_s": statistics.median(train),
            "response_len": statistics.median(length), "step_s": statistics.median(step),
            "peak_gb": float(rows[-1]["peak_mem_gb"])}


def markdown(rows: list[dict]) -> list[str]:
    out = ["## LLM: `llm_demo.py --device cuda` in bf16 (autocast, float32 master weights)", "",
           "**Random weights, built from a public config** (this GPU machine has no internet): the timings hold "
           "for the real model of the same shapes, the rewards mean nothing. Every response runs to "
           "`--max-new-tokens` (random weights do not emit EOS). Medians over the steps after the first; "
           "tokens = generated response tokens; training = advantages + the clipped update; peak = "
           "`torch.cuda.max_memory_allocated` over the whole run.", "",
           "| model shapes | batch | run | flags | sampling tok/s | training tok/s | s per step | peak GPU GB |",
           "|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        flags = " ".join(RUNS[r["run"]]) or "(defaults)"
        if "error" in r:
            out.append(f"| {r['shape']} | {r['setting']} | {r['run']} | `{flags}` | failed: {r['error']} | | | |")
            continue
        out.append(f"| {r['shape']} | {r['setting']} | {r['run']} | `{flags}` | {r['sample_tok_s']:,.0f} | "
                   f"{r['train_tok_s']:,.0f} | {r['step_s']:.2f} | {r['peak_gb']:.2f} |")
    out += ["", "Batch demo = the defaults: 16 responses x 24 new tokens, micro-batch 4."]
    if any(r["setting"] == "wide" for r in rows):
        out[-1] += " Batch wide = `" + " ".join(SETTINGS["wide"]) + "`."
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", required=True, help="the default model's folder (~/.cache/sppo/SmolLM2-135M-Instruct)")
    p.add_argument("--shapes", nargs="+", default=["qwen0.5b", "smollm2"], choices=["qwen0.5b", "smollm2"])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--steps", type=int, default=4, help="steps per run (the first is a warm-up)")
    p.add_argument("--name", default="llm-cuda", help="results/gpu/<name>.json (several sittings: several names)")
    p.add_argument("--device", default="cuda", help="cuda (cpu only to try this script on a tiny budget)")
    args = p.parse_args()
    if not os.path.isfile(os.path.join(args.tokenizer, "tokenizer.json")):
        raise SystemExit(f"--tokenizer {args.tokenizer}: no tokenizer.json there; pass the default model's folder")
    rows = []
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None   # checkpoints of a 0.5B run: keep them off disk
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        for shape in args.shapes:
            model = build_model(shape, args.tokenizer, os.path.join(tmp, shape))
            for setting in args.settings:
                for run in args.runs if setting == "demo" else [r for r in WIDE_RUNS if r in args.runs]:
                    r = {"shape": shape, "setting": setting, "run": run,
                         **time_run(model, [*RUNS[run], *SETTINGS[setting]], args.steps, tmp, args.device)}
                    rows.append(r)
                    print(r, flush=True)
                    # after every run: a cut-off sitting keeps what it measured
                    save_json(os.path.join(RESULTS, "gpu", args.name + ".json"), {"rows": rows, "provenance": provenance()}, 2)
    print("\n".join(markdown(rows)))


if __name__ == "__main__":
    main()
