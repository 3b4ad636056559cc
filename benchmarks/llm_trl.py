"""The peer: TRL's GRPOTrainer on the LLM demo's own task, scored with the demo's own protocol.

Same model (SmolLM2-135M-Instruct, float32 on the CPU), same training problems and chat prompts, same
reward function (llm_tasks.reward), same response limit and temperature as `python llm_demo.py`; TRL's
settings are those of the reference measurement in the issue: G = 8 completions per prompt, 16 per step,
lr 2e-5, no KL (beta 0), one pass per batch, 30 steps. Before and after training the model is scored by
llm_demo.evaluate on the same 200 held-out problems (Avg@2 at temperature 0.7, greedy). Writes
results/llm/runs/trl-grpo.json (trl-grpo-s<N>.json for --seed N != 1), which benchmarks/llm.py puts in
its table. With --run-name (as benchmarks/llm_suite.py runs it) it writes runs/<run-name>/results.json and
progress.csv (the reward of each step's completions) as llm_demo.py does, instead. Benchmark-only dependencies:

    pip install trl datasets
    python benchmarks/llm_trl.py                 # llm_demo.py's flags change the shared settings
    python benchmarks/llm_trl.py --seed 2 --threads 1
"""
import dataclasses
import os
import sys
import time

T_START = time.perf_counter()
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import llm_demo  # noqa: E402
import llm_models  # noqa: E402
import llm_tasks  # noqa: E402
from benchmarks.llm import OUT, run_name  # noqa: E402
from benchmarks.runner import provenance, save_json  # noqa: E402


def main():
    prov = provenance()
    # the demo's defaults (task, temperature, response limit, evaluation protocol); its flags may change them
    a = llm_demo.parse_args(sys.argv[1:], llm_demo.LLMArgs, __doc__.split("\n")[0])
    from datasets import Dataset   # benchmark-only dependencies: after the arguments, so that --help runs without
    from trl import GRPOConfig, GRPOTrainer
    name = run_name("trl-grpo", a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device("cpu")
    policy = llm_models.load(a.model, device, torch.float32)
    train_set, eval_set = llm_demo.load_problems(a)
    eval_prompts, eval_answers = llm_demo.encode_problems(a, policy, eval_set, "held-out")
    t0 = time.perf_counter()
    before = llm_demo.evaluate(a, policy, eval_prompts, eval_answers)
    before_s = time.perf_counter() - t0

    data = Dataset.from_list([{"prompt": [{"role": "system", "content": llm_tasks.SYSTEM_PROMPT},
                                          {"role": "user", "content": llm_tasks.user_message(p.question, a.prompt_style)}],
                               "answer": p.answer} for p in train_set])
    tokens = [0]

    def correct(prompts, completions, answer, **kw):   # the demo's 0/1 reward
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        tokens[0] += sum(len(policy.tok(t)["input_ids"]) + 1 for t in texts)   # + EOS
        return [llm_tasks.reward(t, ans) for t, ans in zip(texts, answer)]

    import tempfile
    config = GRPOConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False,
                        per_device_train_batch_size=16, num_generations=8, steps_per_generation=1,
                        gradient_accumulation_steps=1, learning_rate=2e-5, beta=0.0, temperature=a.temperature,
                        top_k=0, top_p=1.0, max_completion_length=a.max_new_tokens, max_steps=a.steps,
                        num_iterations=1, logging_steps=1, report_to=[], save_strategy="no", seed=a.seed)
    trainer = GRPOTrainer(model=policy.model, reward_funcs=correct, args=config, train_dataset=data,
                          processing_class=policy.tok)
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    policy.tok.padding_side = "left"
    t0 = time.perf_counter()
    after = llm_demo.evaluate(a, policy, eval_prompts, eval_answers)
    after_s = time.perf_counter() - t0
    res = {"name": name, "flags": ["TRL GRPOTrainer: G 8, 16 completions/step, lr 2e-5, beta 0"]
           + ([f"seed {a.seed}"] if a.seed != 1 else []) + ([f"threads {a.threads}"] if a.threads else []),
           "args": {**dataclasses.asdict(a), "eval_every": 0}, "accuracy_before": before["avg_at_k"], "accuracy_after": after["avg_at_k"],
           "greedy_before": before["greedy"], "greedy_after": after["greedy"], "train_wall_s": train_s,
           "eval_before_s": before_s, "eval_after_s": after_s, "gen_tokens": tokens[0],
           "peak_mem_gb": llm_demo.peak_memory_gb(device), "critic_pearson": None,
           "eval_curve": [{"step": 0, "wall_time": 0.0, "gen_tokens": 0, "avg_at_k": before["avg_at_k"], "greedy": before["greedy"]},
                          {"step": a.steps, "wall_time": train_s, "gen_tokens": tokens[0], "avg_at_k": after["avg_at_k"],
                           "greedy": after["greedy"]}],
           "process_s": time.perf_counter() - T_START, "provenance": prov,
           "summary": f"TRL GRPO: Avg@{a.eval_k} {before['avg_at_k']:.1%} -> {after['avg_at_k']:.1%}, greedy "
                      f"{before['greedy']:.1%} -> {after['greedy']:.1%}, {train_s:.0f} s of training"}
    if a.run_name:   # as llm_demo.py: the run's folder, for the benchmark runner
        folder = os.path.join("runs", a.run_name)
        os.makedirs(folder, exist_ok=True)
        save_json(os.path.join(folder, "results.json"), res)
        rewards = [log["reward"] for log in trainer.state.log_history if "reward" in log]
        with open(os.path.join(folder, "progress.csv"), "w") as f:
            f.write("step,reward\n" + "".join(f"{i},{r}\n" for i, r in enumerate(rewards, start=1)))
    else:
        save_json(os.path.join(OUT, "runs", name + ".json"), res)
    print(res["summary"])


if __name__ == "__main__":
    main()
