"""Sequence-Level PPO against GRPO, RLOO and token-level PPO on one task and one protocol (the LLM demo).

Every algorithm runs the default `python llm_demo.py` with only --algo changed (GRPO and RLOO with G = 8,
so all of them sample the same 16 responses per step from 16 or 2 prompts), scored on the same 200
held-out problems (Avg@2 at the training temperature, and greedy) before training, every --eval-every
steps (the training clock pauses) and at the end. Each run is one fresh process; its results.json is kept
in results/llm/runs/<name>.json, and a run whose file exists is skipped, so the benchmark can be built up
over several sittings. Then results/llm/compare.{json,md,png} are rebuilt from all the runs present.

    python benchmarks/llm.py                         # sppo, grpo, rloo, ppo: ~15 min each on 2 CPU cores
    python benchmarks/llm.py --runs sppo grpo        # a subset
    python benchmarks/llm.py --runs sppo grpo --seeds 2 3   # more seeds (runs named sppo-s2, ...)
    python benchmarks/llm_second_task.py && python benchmarks/llm.py --runs sppo-mixed grpo-mixed   # a second task
    python benchmarks/llm.py --render                # only rebuild the table and the figure
    python benchmarks/llm.py --memory                # peak memory of 3 training steps per critic and algorithm
    python benchmarks/llm.py --adam                  # one Adam step on the default model: PyTorch's three kernels
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
from runlog import colour  # noqa: E402
from benchmarks.runner import (RESULTS, Run, figure, launch, load_json, mean_std, provenance, run_all,  # noqa: E402
                               save_json, write_results)

OUT = os.path.join(RESULTS, "llm")
SECOND_TASK = ["--data-file", "results/llm/data/mixed_train.jsonl", "--eval-file", "results/llm/data/mixed_test.jsonl"]
RUNS = {  # name -> flags added to the default command
    "sppo": [],
    "grpo": ["--algo", "grpo", "--group-size", "8"],
    "rloo": ["--algo", "rloo", "--group-size", "8"],
    "ppo": ["--algo", "ppo", "--ratio", "token"],
    "sppo-critic-same": ["--critic", "same"],
    "sppo-lr5e-5": ["--lr", "5e-5"],
    "sppo-token": ["--ratio", "token"],          # the ratio ablation: the paper's per-token ratio ...
    "sppo-joint": ["--ratio", "joint"],          # ... and the whole response's joint ratio
    # With one minibatch the only update is on-policy: every ratio is exactly 1 and the three
    # granularities give the same gradient. Two minibatches (the paper's 1.5B setting) let them differ.
    "sppo-mb2": ["--minibatches", "2"],
    "sppo-token-mb2": ["--ratio", "token", "--minibatches", "2"],
    "sppo-joint-mb2": ["--ratio", "joint", "--minibatches", "2"],
    "sppo-head-lr1e-4": ["--critic-head-lr", "1e-4"],   # a slower critic head: does V stop oscillating?
    "sppo-tok32": ["--max-new-tokens", "32"],   # room to finish: seed 1's responses sat at the 24-token cap
    "sppo-mixed": SECOND_TASK,                   # the defaults on a task they were not chosen on
    "grpo-mixed": ["--algo", "grpo", "--group-size", "8", *SECOND_TASK],
}


def run_name(name: str, seed: int) -> str:
    """Seed 1 (llm_demo.py's default) keeps the plain name; other seeds get a suffix."""
    return name if seed == 1 else f"{name}-s{seed}"


def declare(name: str, flags: list[str], eval_every: int) -> Run:
    return Run(name, ["--log-every", "0", "--eval-every", str(eval_every), *flags], script="llm_demo.py",
               result=os.path.join(OUT, "runs", name + ".json"), info={"flags": flags})


def measure(run: Run, keep_csv: bool = True) -> dict:
    """One fresh `python llm_demo.py` process: its results.json, with the flags, the whole process's seconds,
    the summary line and the commit as it was when the run started; progress.csv kept beside it."""
    prov = provenance()
    out = launch(run)
    if keep_csv:
        with open(os.path.join(OUT, "runs", run.name + ".csv"), "w") as f:
            f.write(out.progress)
    return {**out.results, "name": run.name, "flags": run.info["flags"], "process_s": out.process_s,
            "summary": out.summary, "provenance": prov}


def render() -> None:
    runs = {}
    for name in [*RUNS, "trl-grpo"]:   # trl-grpo: written by benchmarks/llm_trl.py
        for seed in range(1, 10):
            path = os.path.join(OUT, "runs", run_name(name, seed) + ".json")
            if os.path.isfile(path):
                runs[run_name(name, seed)] = load_json(path)
    if not runs:
        return
    first = next(iter(runs.values()))
    k, n = first["args"]["eval_k"], first["args"]["n_eval"]
    lines = ["# The LLM demo: Sequence-Level PPO against GRPO, RLOO and token-level PPO", "",
             f"Default `python llm_demo.py` with only the flags shown changed; {n} held-out problems, Avg@{k} at "
             f"temperature {first['args']['temperature']} and greedy; training wall-clock excludes the evaluations. "
             "Peak memory is the process's peak RSS.", "",
             f"| run | flags | Avg@{k} before → after | greedy before → after | training s | generated tokens | "
             "peak GB | critic Pearson / Spearman |", "|---|---|---|---|---:|---:|---:|---|"]
    for name, r in runs.items():
        calib = (f"{r['critic_pearson']:.2f} / {r['critic_spearman']:.2f}" if r.get("critic_pearson") is not None else "—")
        lines.append(f"| {name} | `{' '.join(r['flags']) or '(defaults)'}` | {r['accuracy_before']:.1%} → "
                     f"{r['accuracy_after']:.1%} | {r['greedy_before']:.1%} → {r['greedy_after']:.1%} | "
                     f"{r['train_wall_s']:.0f} | {r['gen_tokens']:,} | {r['peak_mem_gb']:.1f} | {calib} |")
    groups = {}   # the runs of one configuration over its seeds
    for name, r in runs.items():
        groups.setdefault(name.rsplit("-s", 1)[0] if name.rsplit("-s", 1)[-1].isdigit() else name, []).append(r)
    if any(len(g) > 1 for g in groups.values()):
        lines += ["", "Over seeds (mean ± standard deviation of the runs above; one row per configuration):", "",
                  f"| run | seeds | Avg@{k} before | Avg@{k} after | greedy after | gain in Avg@{k} (points) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for base, g in groups.items():
            lines.append(f"| {base} | {len(g)} | {percent([r['accuracy_before'] for r in g])} | "
                         f"{percent([r['accuracy_after'] for r in g])} | {percent([r['greedy_after'] for r in g])} | "
                         f"{percent([r['accuracy_after'] - r['accuracy_before'] for r in g], points=True)} |")
    lines += ["", f"Held-out Avg@{k} along training (step: accuracy at training seconds):", ""]
    for name, r in runs.items():
        lines.append(f"- {name}: " + ", ".join(f"{p['step']}: {p['avg_at_k']:.1%} at {p['wall_time']:.0f} s"
                                                for p in r["eval_curve"]))
    lines += [""] + [f"- {name}: commit {r['provenance']['commit']}, {r['provenance']['machine']}, "
                     f"torch {r['provenance']['torch']}" for name, r in runs.items()]
    lines += ["", "Command: `python benchmarks/llm.py` (each run: `python llm_demo.py --eval-every "
              f"{first['args']['eval_every']} <flags>`)"]
    with open(os.path.join(OUT, "compare.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    save_json(os.path.join(OUT, "compare.json"), {name: {k2: v for k2, v in r.items() if k2 not in ("eval_before", "eval_after")}
                                                  for name, r in runs.items()})
    plot(groups, k)
    print("\n".join(lines))


def percent(xs: list, points: bool = False) -> str:
    """Mean ± standard deviation of fractions, in percent (or points)."""
    m, s = mean_std(xs)
    unit = "" if points else "%"
    return f"{100 * m:.1f}{unit}" if len(xs) == 1 else f"{100 * m:.1f} ± {100 * s:.1f}{unit}"


FIGURE = ("sppo", "ppo", "grpo", "rloo", "trl-grpo")   # the algorithms at their defaults on the built-in task


def plot(groups: dict, k: int) -> None:
    """One colour per algorithm: each seed a thin line, the mean over seeds (per evaluation) a thick one."""
    with figure(os.path.join(OUT, "compare.png"), ncols=2, figsize=(10, 4), sharey=True) as axes:
        import matplotlib.pyplot as plt
        for cycle, base in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], [b for b in FIGURE if b in groups]):
            color = colour(base) or cycle   # one colour per method across the project's figures (runlog.COLOURS)
            curves = [r["eval_curve"] for r in groups[base]]
            for ax, key in zip(axes, ("wall_time", "gen_tokens")):
                for c in curves:
                    ax.plot([p[key] for p in c], [p["avg_at_k"] for p in c], color=color, lw=0.8, alpha=0.35)
                n = min(len(c) for c in curves)   # evaluations every seed has (the same steps)
                ax.plot([statistics.mean(c[i][key] for c in curves) for i in range(n)],
                        [statistics.mean(c[i]["avg_at_k"] for c in curves) for i in range(n)], color=color, lw=2.2,
                        marker="o", label=f"{base} (mean of {len(curves)} seeds)" if len(curves) > 1 else f"{base} (1 seed)")
        axes[0].set_xlabel("training wall-clock (s), 2 CPU cores"), axes[1].set_xlabel("generated training tokens")
        axes[0].set_ylabel(f"held-out Avg@{k}"), axes[0].legend(fontsize=8)
        axes[0].figure.suptitle("SmolLM2-135M-Instruct on generated word problems: one protocol for every algorithm")


MEMORY = {"sppo, --critic small": [], "sppo, --critic same": ["--critic", "same"],
          "ppo, --critic small": ["--algo", "ppo", "--ratio", "token"], "ppo, --critic same": ["--algo", "ppo", "--ratio", "token", "--critic", "same"],
          "grpo (no critic)": ["--algo", "grpo", "--group-size", "8"],
          "sppo, micro-batches of 8": ["--micro-batch", "8"], "sppo, micro-batches of 2": ["--micro-batch", "2"]}


def memory() -> None:
    """Peak RSS of the training itself: 3 steps, a held-out set of 8 so that generation for the evaluation
    (128 responses at once) does not set the peak. Each configuration in a fresh process."""
    runs = [declare(name, [*flags, "--steps", "3", "--n-eval", "8", "--eval-k", "1"], eval_every=0)
            for name, flags in MEMORY.items()]
    rows = []

    def keep(run, r):
        rows.append({"name": run.name, "flags": MEMORY[run.name], "peak_mem_gb": r["peak_mem_gb"],
                     "train_wall_s": r["train_wall_s"], "provenance": r["provenance"]})
        print(rows[-1], flush=True)
    run_all(runs, lambda run: measure(run, keep_csv=False), then=keep)
    p = rows[0]["provenance"]
    lines = ["# Peak memory of the LLM demo's training (CPU, float32)", "",
             "Peak resident set size of `python llm_demo.py --steps 3 --n-eval 8 --eval-k 1 <flags>` (model, critic, "
             "Adam states, activations of 16 responses in micro-batches of 4 unless the flags say otherwise).", "",
             "| configuration | flags | peak RSS GB | 3 training steps, s |", "|---|---|---:|---:|"]
    lines += [f"| {r['name']} | `{' '.join(r['flags']) or '(defaults)'}` | {r['peak_mem_gb']:.2f} | {r['train_wall_s']:.0f} |"
              for r in rows]
    lines += ["", f"Machine: {p['machine']}; torch {p['torch']}; commit {p['commit']}.",
              "Command: `python benchmarks/llm.py --memory`"]
    with open(os.path.join(OUT, "memory.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    save_json(os.path.join(OUT, "memory.json"), rows)
    print("\n".join(lines))


def adam(threads: int = 2, repeats: int = 5) -> None:
    """Seconds per Adam step over what llm_demo.py's optimizer holds by default (the policy, the small
    critic's layers and head), with PyTorch's three implementations: the per-tensor loop (its CPU default),
    foreach (batched per op) and fused (one pass per weight, llm_demo.py's choice). Gradients are random:
    the cost of a step does not depend on their values."""
    import torch
    import llm_models
    from llm_demo import LLMArgs
    torch.set_num_threads(threads)
    a = LLMArgs()
    policy = llm_models.load(a.model, torch.device("cpu"), torch.float32)
    critic = llm_models.critic_body(policy.model, a.critic, a.critic_layers)
    params = [*policy.model.parameters(), *(w for w in critic.parameters() if w.requires_grad)]
    for w in params:
        w.grad = torch.randn_like(w)
    rows = []
    for kind, kw in (("per-tensor loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        opt = torch.optim.Adam([w.detach().clone().requires_grad_() for w in params], lr=1e-5, **kw)
        for w, src in zip(opt.param_groups[0]["params"], params):
            w.grad = src.grad
        opt.step()   # the first step allocates the moments
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - t0)
        rows.append({"kind": kind, "median_s": statistics.median(times), "min_s": min(times)})
        del opt
        print(rows[-1], flush=True)
    n = sum(w.numel() for w in params)
    lines = ["# One Adam step over the LLM demo's trainable weights (CPU, float32)", "",
             f"{n / 1e6:.0f}M weights (SmolLM2-135M and the small critic's trainable layers and head), "
             f"{threads} threads, median (min) of {repeats} steps after the first.", "",
             "| implementation | s per step |", "|---|---:|"]
    lines += [f"| {r['kind']} | {r['median_s']:.3f} ({r['min_s']:.3f}) |" for r in rows]
    write_results("llm/adam", {"provenance": provenance(), "weights": n, "threads": threads, "rows": rows}, "\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", default=["sppo", "grpo", "rloo", "ppo"], choices=list(RUNS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1], help="llm_demo.py --seed of each run (1-9)")
    p.add_argument("--threads", type=int, default=0, help="llm_demo.py --threads (1: two benchmarks side by side)")
    p.add_argument("--eval-every", type=int, default=15, help="held-out scoring every N steps (besides before/after)")
    p.add_argument("--render", action="store_true", help="only rebuild compare.{md,json,png}")
    p.add_argument("--memory", action="store_true", help="only measure peak memory (results/llm/memory.md)")
    p.add_argument("--adam", action="store_true", help="only time one Adam step per implementation (results/llm/adam.md)")
    args = p.parse_args()
    os.makedirs(os.path.join(OUT, "runs"), exist_ok=True)
    if args.memory:
        return memory()
    if args.adam:
        return adam()
    if not args.render:
        run_all([declare(run_name(base, seed), RUNS[base] + (["--seed", str(seed)] if seed != 1 else [])
                         + (["--threads", str(args.threads)] if args.threads else []), args.eval_every)
                 for seed in args.seeds for base in args.runs],
                measure, then=lambda run, res: (print(res["summary"], flush=True), render()))
    render()


if __name__ == "__main__":
    main()
