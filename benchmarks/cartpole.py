"""Wall-clock and env steps until CartPole-v1 is solved, for `python sppo.py --env CartPole-v1`.

"Solved" is the usual mark: the mean return of the last 20 finished episodes first reaches 475.
Each seed runs the real command in a fresh process (in a temporary folder); the figures are read
from its progress.csv: `wall_time` is the training loop's clock (environment and model built,
Python imports excluded) and `process_s` the whole command's, imports included.

With --sb3, Stable-Baselines3's PPO with rl-zoo's tuned CartPole-v1 settings runs on the same seeds
in the same invocation, timed the same way (needs `pip install stable-baselines3`).

Usage:
    python benchmarks/cartpole.py                      # 5 seeds of the default command
    python benchmarks/cartpole.py --sb3                # ... and SB3's tuned PPO beside it
    python benchmarks/cartpole.py --seeds 1 2 -- --algo ppo   # flags after -- go to sppo.py
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
from benchmarks.runner import Run, launch, median_range, provenance, write_results  # noqa: E402

THRESHOLD, WINDOW = 475.0, 20


def first_solved(rows: list[dict]) -> dict | None:
    """progress.csv's first row at which the last-20 mean return reaches the threshold."""
    return next((r for r in rows if float(r["last20_return"]) >= THRESHOLD), None)


def run_sppo(seed: int, extra: list[str], budget: int) -> dict:
    """`python sppo.py --env CartPole-v1 ...` in a fresh process and folder."""
    out = launch(Run(f"seed {seed}", ["--env", "CartPole-v1", "--seed", str(seed), "--total-steps", str(budget), *extra]))
    rows, hit = out.rows, first_solved(out.rows)
    return {"seed": seed, "solved": hit is not None, "process_s": out.process_s,
            "wall_s": float(hit["wall_time"]) if hit else None, "env_steps": int(hit["env_steps"]) if hit else None,
            "steps_per_s": float(rows[-1]["steps_per_s"])}


def run_sb3(seed: int, budget: int) -> dict:
    """SB3 PPO with rl-zoo's CartPole-v1 hyper-parameters, stopped the first time the last-20 mean >= 475."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    def linear(start):
        return lambda progress_remaining: progress_remaining * start

    class StopWhenSolved(BaseCallback):
        def __init__(self):
            super().__init__()
            self.returns, self.hit = [], None

        def _on_step(self):
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(info["episode"]["r"])
            if len(self.returns) >= WINDOW and statistics.mean(self.returns[-WINDOW:]) >= THRESHOLD:
                self.hit = (time.perf_counter() - self.start, self.num_timesteps)
                return False
            return True

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2), seed=seed, device="cpu", verbose=0)
    callback = StopWhenSolved()
    callback.start = time.perf_counter()
    model.learn(total_timesteps=budget, callback=callback)
    hit = callback.hit
    return {"seed": seed, "solved": hit is not None, "wall_s": hit[0] if hit else None,
            "env_steps": hit[1] if hit else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--budget", type=int, default=1_000_000, help="env-step budget per run")
    parser.add_argument("--sb3", action="store_true", help="also run SB3's tuned PPO (pip install stable-baselines3)")
    parser.add_argument("--name", default="cartpole", help="results/<name>.{json,md}")
    parser.add_argument("--sb3-worker", type=int, help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    if args.sb3_worker is not None:   # one SB3 run in its own process, result on stdout
        print(repr(run_sb3(args.sb3_worker, args.budget)))
        return
    results = {"sppo": [], "sb3": []}
    for seed in args.seeds:
        results["sppo"].append(run_sppo(seed, extra, args.budget))
        print("sppo", results["sppo"][-1], flush=True)
        if args.sb3:
            out = subprocess.run([sys.executable, __file__, "--sb3-worker", str(seed), "--budget", str(args.budget)],
                                 capture_output=True, text=True, check=True)
            results["sb3"].append(eval(out.stdout.strip().splitlines()[-1]))
            print("sb3 ", results["sb3"][-1], flush=True)
    label = "python sppo.py --env CartPole-v1" + (" " + " ".join(extra) if extra else "")
    lines = [f"CartPole-v1 until the last-{WINDOW} mean return first reaches {THRESHOLD:g}; median (min–max) over "
             f"seeds {', '.join(map(str, args.seeds))}.", "",
             "| method | solved | wall-clock s | env steps |", "|---|---|---|---|",
             f"| `{label}` | {sum(r['solved'] for r in results['sppo'])}/{len(args.seeds)} | "
             f"{median_range(results['sppo'], 'wall_s')} | {median_range(results['sppo'], 'env_steps')} |"]
    if args.sb3:
        lines.append(f"| SB3 PPO, rl-zoo tuned (same run) | {sum(r['solved'] for r in results['sb3'])}/{len(args.seeds)} | "
                     f"{median_range(results['sb3'], 'wall_s')} | {median_range(results['sb3'], 'env_steps')} |")
    procs = [r["process_s"] for r in results["sppo"]]
    lines += ["", f"Whole `sppo.py` process (imports, set-up, plot included): median {statistics.median(procs):.1f} s. "
              f"Training-loop throughput: median {statistics.median(r['steps_per_s'] for r in results['sppo']):,.0f} env steps/s."]
    write_results(args.name, {"provenance": provenance(), "results": results}, "\n".join(lines))


if __name__ == "__main__":
    main()
