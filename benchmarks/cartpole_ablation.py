"""The evidence behind sppo.py's CartPole-v1 defaults: ratio granularity, advantage normalisation,
batch sizes -- each changed on its own away from the defaults, on seeds the headline benchmark
(benchmarks/cartpole.py, seeds 1-5) does not use.

Each configuration runs sppo.py's `main` in this process (one Python start-up for the whole grid)
until the last-20 mean return first reaches 475 or the budget runs out. The table gives the median
and range of env steps and of training wall-clock over the solved seeds, and how many were solved.

Usage:
    python benchmarks/cartpole_ablation.py                 # seeds 6-15, the grid below
    python benchmarks/cartpole_ablation.py --seeds 6 7 --budget 100000
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
from benchmarks.cartpole import first_solved  # noqa: E402
from benchmarks.runner import Run, launch, median_range, provenance, write_results  # noqa: E402

# (label, flags) -- flags are changes from the defaults of `python sppo.py --env CartPole-v1`
GRID = [
    ("defaults", []),
    ("token ratio", ["--ratio", "token"]),
    ("joint ratio", ["--ratio", "joint"]),
    ("no advantage normalisation", ["--no-norm-adv"]),
    ("token ratio, no normalisation", ["--ratio", "token", "--no-norm-adv"]),
    ("8 episodes per update, 1 minibatch", ["--num-episodes", "8", "--minibatches", "1"]),
    ("16 episodes per update, 2 minibatches", ["--num-episodes", "16", "--minibatches", "2"]),
    ("64 episodes per update, 8 minibatches", ["--num-episodes", "64", "--minibatches", "8"]),
    ("1 minibatch", ["--minibatches", "1"]),
    ("8 minibatches", ["--minibatches", "8"]),
    ("4 epochs", ["--epochs", "4"]),
    ("lr 1e-2", ["--lr", "1e-2"]),
    ("token-level PPO (GAE, lambda 0.95)", ["--algo", "ppo", "--ratio", "token"]),
    ("REINFORCE (normalisation subtracts the batch mean: a baseline)", ["--algo", "reinforce"]),
    ("REINFORCE, no baseline at all", ["--algo", "reinforce", "--no-norm-adv"]),
    ("GRPO, G = 8", ["--algo", "grpo", "--group-size", "8"]),
    ("RLOO, G = 8", ["--algo", "rloo", "--group-size", "8"]),
]


def run(flags: list[str], seed: int, budget: int) -> dict:
    out = launch(Run(f"{' '.join(flags)} --seed {seed}", ["--env", "CartPole-v1", "--seed", str(seed),
                                                            "--total-steps", str(budget), *flags], in_process=True))
    hit = first_solved(out.rows)
    return {"seed": seed, "solved": hit is not None, "env_steps": int(hit["env_steps"]) if hit else None,
            "wall_s": float(hit["wall_time"]) if hit else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(6, 16)))
    parser.add_argument("--budget", type=int, default=300_000, help="env-step budget per run")
    parser.add_argument("--only", nargs="*", help="run only the grid rows whose label contains one of these")
    args = parser.parse_args()
    grid = [g for g in GRID if not args.only or any(o in g[0] for o in args.only)]
    out, prov = {}, provenance()
    for label, flags in grid:
        out[label] = [run(flags, s, args.budget) for s in args.seeds]
        print(label, [r["env_steps"] for r in out[label]], flush=True)
    lines = [f"CartPole-v1, one change at a time from the defaults; seeds {args.seeds[0]}–{args.seeds[-1]}, "
             f"budget {args.budget // 1000}k env steps; median (min–max) over the solved seeds.", "",
             "| configuration | flags | solved | env steps to last-20 mean ≥ 475 | training wall-clock s |",
             "|---|---|---|---|---|"]
    for label, flags in grid:
        rows = out[label]
        lines.append(f"| {label} | `{' '.join(flags) or '(none)'}` | {sum(r['solved'] for r in rows)}/{len(rows)} | "
                     f"{median_range(rows, 'env_steps')} | {median_range(rows, 'wall_s')} |")
    write_results("cartpole_ablation", {"provenance": prov, "grid": dict(GRID), "results": out}, "\n".join(lines))


if __name__ == "__main__":
    main()
