"""Is this project's token-level PPO a sound baseline? Dense rewards, beside Stable-Baselines3's PPO.

"PPO flatlines on a sparse outcome" means something only if the same PPO learns where step-level credit
is easy. Here `sppo.py --algo ppo --ratio token` (GAE, per-step critic) runs on dense-reward tasks beside
SB3's PPO with rl-zoo's tuned settings for each task, over the same env-step budget and seeds. Curves
are the mean return of the last 20 finished episodes against env steps. Ours runs twice: with sppo.py's
defaults (tuned on CartPole-v1 returns) and with rl-zoo's settings carried over where sppo.py has them
(gamma, lambda, lr, epochs, and as many gradient steps per sample as the episode-mode minibatches allow).

Needs `pip install stable-baselines3` (benchmark-only). Finished runs are kept in results/dense/runs/
and skipped next time.

Usage:
    python benchmarks/dense.py                          # Pendulum-v1 and CartPole-v1, seeds 1 2 3
    python benchmarks/dense.py --envs Pendulum-v1 --seeds 1
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
from benchmarks.runner import (REPO, RESULTS, Run, band, figure, launch, load_json, mean_std, provenance,  # noqa: E402
                               run_all, write_results)

OUT = os.path.join(RESULTS, "dense")
WINDOW = 20


def linear(start):
    return lambda progress_remaining: progress_remaining * start


# rl-zoo3 2.9.2, hyperparams/ppo.yml, for each env; and our settings carried over from it
CONFIGS = {
    "Pendulum-v1": {
        "steps": 100_000,
        "sb3": dict(n_envs=4, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                    learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4),
        "ours": {"defaults": [],
                 # 20 episodes x 200 steps ~ zoo's 4096 steps per update; 20 minibatches of one episode
                 # (200 steps ~ zoo's 64-sample minibatches, as close as whole episodes allow); 10 epochs
                 "zoo-like": ["--gamma", "0.9", "--gae-lambda", "0.95", "--lr", "1e-3", "--critic-lr", "1e-3",
                              "--epochs", "10", "--num-episodes", "20", "--minibatches", "20"]},
    },
    "CartPole-v1": {
        "steps": 100_000,
        "sb3": dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                    learning_rate=linear(1e-3), clip_range=linear(0.2)),
        "ours": {"defaults": [],
                 "zoo-like": ["--gamma", "0.98", "--gae-lambda", "0.8", "--lr", "1e-3", "--critic-lr", "1e-3",
                              "--epochs", "20"]},
    },
}


def declare(env_id: str, label: str, seed: int) -> Run:
    """label: sb3-zoo, or ours-<a key of CONFIGS[env_id]["ours"]>."""
    name = f"{env_id}__{label}__{seed}"
    flags = CONFIGS[env_id]["ours"].get(label[len("ours-"):], [])
    return Run(name, ["--env", env_id, "--algo", "ppo", "--ratio", "token", "--seed", str(seed), "--no-stop-when-solved",
                      "--run-name", os.path.join("dense", name), *flags],
               budget=["--total-steps", str(CONFIGS[env_id]["steps"])], run_dir=os.path.join(REPO, "runs", "dense", name),
               result=os.path.join(OUT, "runs", name + ".json"), info={"env": env_id, "label": label, "seed": seed})


def measure(run: Run) -> dict:
    if run.info["label"] == "sb3-zoo":
        curve, wall, command = run_sb3(run.info["env"], run.info["seed"], CONFIGS[run.info["env"]]["steps"])
    else:
        out = launch(run)
        rows = out.rows
        curve = [(int(r["env_steps"]), float(r["last20_return"])) for r in rows]
        wall, command = float(rows[-1]["wall_time"]), out.command
    result = {**run.info, "curve": curve, "wall_time": wall, "command": command,
              "final_last20": curve[-1][1] if curve else None}
    print(f"{run.name}: last-20 mean return {result['final_last20']:.1f} after {CONFIGS[run.info['env']]['steps']} "
          f"steps, {wall:.0f} s", flush=True)
    return result


def run_sb3(env_id, seed, steps):
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class Curve(BaseCallback):
        def __init__(self):
            super().__init__()
            self.returns, self.curve = [], []

        def _on_step(self):
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(info["episode"]["r"])
                    if len(self.returns) >= WINDOW:
                        self.curve.append((self.num_timesteps, sum(self.returns[-WINDOW:]) / WINDOW))
            return True

    import torch
    torch.set_num_threads(1)   # as sppo.py (--threads 1): small MLPs, and runs may share the machine
    cfg = dict(CONFIGS[env_id]["sb3"])
    env = make_vec_env(env_id, n_envs=cfg.pop("n_envs"), seed=seed)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **cfg)
    cb = Curve()
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=cb)
    return cb.curve, time.perf_counter() - t0, "stable_baselines3.PPO, rl-zoo settings"


def render(results):
    import gymnasium as gym
    import numpy as np
    lines = ["# Token-level PPO on dense rewards, beside Stable-Baselines3 with rl-zoo's settings\n",
             "Last-20-episode mean return at the end of the budget, mean ± std over seeds; env steps until it first "
             "reaches the env's reward threshold (gymnasium's; Pendulum-v1 has none), median (min–max) over seeds.\n",
             "| env | run | seeds | env steps | final last-20 return | steps to threshold | wall time per run |",
             "|---|---|---|---|---|---|---|"]
    for env_id in CONFIGS:
        rs = [r for r in results if r["env"] == env_id]
        if not rs:
            continue
        grid = np.linspace(0, CONFIGS[env_id]["steps"], 101)
        threshold = gym.spec(env_id).reward_threshold
        with figure(os.path.join(OUT, f"{env_id}.png")) as ax:
            for label in sorted({r["label"] for r in rs}):
                group = [r for r in rs if r["label"] == label]
                band(ax, grid, np.stack([np.interp(grid, [c[0] for c in r["curve"]], [c[1] for c in r["curve"]],
                                                   left=np.nan) for r in group]), f"{label} ({len(group)} seeds)")
                hits = sorted(next((s for s, y in r["curve"] if y >= threshold), None) for r in group) if threshold else []
                reached = [h for h in hits if h is not None]
                to_threshold = ("—" if not threshold else f"not reached (0/{len(group)})" if not reached else
                                f"{np.median(reached) / 1e3:.0f}k ({reached[0] / 1e3:.0f}k–{reached[-1] / 1e3:.0f}k), "
                                f"{len(reached)}/{len(group)} reached {threshold:g}")
                lines.append(f"| {env_id} | {label} | {len(group)} | {CONFIGS[env_id]['steps']:,} | "
                             "{:.1f} ± {:.1f} | ".format(*mean_std([r["final_last20"] for r in group])) +
                             f"{to_threshold} | {np.mean([r['wall_time'] for r in group]):.0f} s |")
            ax.set_xlabel("env steps"), ax.set_ylabel(f"mean return of the last {WINDOW} episodes"), ax.set_title(env_id)
            ax.legend()
    lines.append("\nOur commands: " + "; ".join(sorted({f"`{r['command']}`" for r in results if r["label"] != "sb3-zoo"
                                                       and r["seed"] == 1})))
    write_results("dense/dense", {"provenance": provenance(), "runs": results}, "\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--runs", nargs="+", default=["sb3-zoo", "ours-defaults", "ours-zoo-like"])
    a = p.parse_args()
    results = run_all([declare(e, label, s) for e in a.envs for label in a.runs for s in a.seeds], measure)
    folder = os.path.join(OUT, "runs")
    render([load_json(os.path.join(folder, f)) for f in sorted(os.listdir(folder)) if f.endswith(".json")] or results)

if __name__ == "__main__":
    main()
