"""The control benchmark's RL stage: every task x {sppo, ppo, grpo, rloo} x seeds, from the same SFT checkpoint.

Each run is the real command, in its own process:
    python sppo.py --task <task> --init checkpoints/<task>-sft.pt --algo <algo> --seed <seed> --total-episodes <E>
Finished runs are kept in results/rlvr/runs/<name>.{json,csv} (the summary and the per-update curve) and
skipped next time, so the benchmark can be built up over several sittings; a run that was stopped midway
continues from its checkpoint in runs/rlvr/. `--jobs N` runs N at once (one core each).

What is held equal: the SFT start, the outcome reward, epsilon (0.2), the learning rates (COMMON below),
epochs and minibatches (sppo.py's defaults), no advantage standardisation, the paper's episodes per update,
and the per-step clipped ratio (the paper's Eq. 3). What differs is only the advantage. The ablation runs
SPPO with the sequence and joint ratios too.

Usage:
    python benchmarks/rlvr.py                                  # everything missing, then the figures
    python benchmarks/rlvr.py --tasks mountaincar --seeds 1 --jobs 2
    python benchmarks/rlvr.py --ablation                       # SPPO's ratio: token, seq, joint
    python benchmarks/rlvr.py --compile --jobs 2               # compiled rollouts on the native tasks
    python benchmarks/rlvr.py --render                         # only summary.csv, figures and rlvr.md
"""
import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
import envs  # noqa: E402
from benchmarks.runner import (REPO, RESULTS, Run, band, figure, launch, load_json, mean_std,  # noqa: E402,F401
                               provenance, run_all, write_results)

OUT = os.path.join(RESULTS, "rlvr")
ALGOS = ("sppo", "ppo", "grpo", "rloo")
# every method clips the per-step ratio, as the paper (Eq. 3). The sequence ratio (sppo.py's CartPole
# default) was tried first for the sequence methods: over 1000 steps its geometric mean hardly leaves
# [1 - eps, 1 + eps], so clipping stops bounding the update, and SPPO fell below its SFT start on
# pendulum (results/rlvr/rlvr.md, "other ratios")
RATIO = {"sppo": "token", "ppo": "token", "grpo": "token", "rloo": "token"}
# episodes per run: chosen so that the whole benchmark fits about 3 hours on 2 cores (see README)
# (lunarlander: 600 at first, 2000 since, its seq-ratio runs of the first round kept 600; hopper: 400, then 1000;
# pendulum: 1000, then 2000, its seq and joint ablation runs kept 1000)
BUDGET = {"precision-cartpole": 5000, "mountaincar": 1000, "pendulum": 2000, "lunarlander": 2000, "hopper": 1000}
# the RL stage's settings, the same for every method: a smaller actor step than sppo.py's from-scratch
# default (3e-3 collapsed SPPO on mountaincar twice: README), and no advantage standardisation (a 0/1
# outcome already bounds the advantages; the official code does not standardise either)
COMMON = ["--lr", "1e-4", "--no-norm-adv"]
ABLATION_TASKS = ("precision-cartpole", "pendulum")   # joint; seq ran on every task (first round)
SUCCESS_AT = 0.8


def run_name(task, algo, seed, ratio):
    return f"{task}__{algo}__{ratio}__{seed}"


def declare(task: str, algo: str, seed: int, ratio: str, episodes: int, compile: bool = False) -> Run:
    name = run_name(task, algo, seed, ratio)
    flags = ["--task", task, "--init", os.path.join("checkpoints", f"{task}-sft.pt"), "--algo", algo,
             "--ratio", ratio, "--seed", str(seed), "--run-name", os.path.join("rlvr", name), *COMMON]
    if compile and envs.TASKS[task].env_id in envs.NATIVE_ENVS:   # gymnasium's own envs cannot be
        flags.append("--compile")                                          # compiled: those run eagerly
    return Run(name, flags, budget=["--total-episodes", str(episodes), "--total-steps", str(10**10)],
               run_dir=os.path.join(REPO, "runs", "rlvr", name), result=os.path.join(OUT, "runs", name + ".json"),
               info={"task": task, "algo": algo, "ratio": ratio, "seed": seed})


def run_sppo(name, flags, budget, run_dir):   # the one process (tests/test_control_tasks.py replaces it)
    out = launch(Run(name, flags, budget=budget, run_dir=run_dir))
    return out.command, out.rows


def summarise(run: Run) -> dict:
    """Run it (or the rest of it), keep its curve in <name>.csv, and summarise it: final success = mean over
    the last 10% of episodes; episodes_to_80 = first point where the success of the last max(64, B) episodes
    is >= 0.8."""
    command, rows = run_sppo(run.name, run.flags, run.budget, run.run_dir)
    curve = [{"episodes": int(r["episodes"]), "env_steps": int(r["env_steps"]), "wall_time": float(r["wall_time"]),
              "success_rate": float(r["success_rate"])} for r in rows]
    B = curve[1]["episodes"] - curve[0]["episodes"] if len(curve) > 1 else curve[0]["episodes"]
    window = max(1, -(-64 // B))                       # updates in the sliding window of >= 64 episodes
    smooth = [sum(c["success_rate"] for c in curve[max(0, i + 1 - window):i + 1]) / min(i + 1, window)
              for i in range(len(curve))]
    tail = max(1, len(curve) // 10)
    hit = next((curve[i]["episodes"] for i in range(window - 1, len(curve)) if smooth[i] >= SUCCESS_AT), None)
    summary = {**run.info, "episodes": curve[-1]["episodes"],
               "env_steps": curve[-1]["env_steps"], "final_success": sum(c["success_rate"] for c in curve[-tail:]) / tail,
               "episodes_to_80": hit, "wall_time": curve[-1]["wall_time"],
               "steps_per_s": curve[-1]["env_steps"] / curve[-1]["wall_time"], "command": command}
    os.makedirs(os.path.dirname(run.result), exist_ok=True)
    with open(run.result[:-len(".json")] + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    print(f"{run.name}: final success {summary['final_success']:.2f}, {summary['wall_time']:.0f} s", flush=True)
    return summary


def run_one(task: str, algo: str, seed: int, ratio: str, episodes: int, compile: bool = False) -> dict:
    return run_all([declare(task, algo, seed, ratio, episodes, compile)], summarise)[0]


def load_runs():
    folder = os.path.join(OUT, "runs")
    runs = []
    for fn in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if fn.endswith(".json"):
            s = load_json(os.path.join(folder, fn))
            with open(os.path.join(folder, fn[:-5] + ".csv")) as f:
                s["curve"] = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
            runs.append(s)
    return runs


def success_curves(rs, window: int = 64):
    """The success-rate curves of one (task, algo, ratio)'s seeds on a common axis, each smoothed over
    >= `window` episodes -> (episodes [n], success [seeds, n]) (numpy arrays)."""
    import numpy as np
    n = min(len(r["curve"]) for r in rs)
    x = np.array([c["episodes"] for c in rs[0]["curve"][:n]])
    y = np.array([[c["success_rate"] for c in r["curve"][:n]] for r in rs])
    w = max(1, int(np.ceil(window / max(1, x[0]))))
    y = np.stack([np.convolve(row, np.ones(w) / w, mode="valid") for row in y])
    return x[w - 1:], y


def render():
    """summary.csv, one figure per task (and per ablation task), results/rlvr.md with the tables."""
    import numpy as np
    runs = load_runs()
    with open(os.path.join(OUT, "summary.csv"), "w", newline="") as f:
        cols = ["task", "algo", "ratio", "seed", "episodes", "final_success", "episodes_to_80", "wall_time", "steps_per_s"]
        writer = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(runs)
    groups = {}
    for r in runs:
        groups.setdefault((r["task"], r["algo"], r["ratio"]), []).append(r)
    lines = ["# The control benchmark: RL from the SFT checkpoint with a 0/1 outcome\n",
             "Final success = mean success rate over the last 10% of each run's episodes; mean ± std over seeds. "
             f"Episodes to {SUCCESS_AT:.0%} = first point where the success rate of the last ≥ 64 episodes "
             "reaches it (median over the seeds that got there, the later middle one of an even number; n/N = how many did).\n"]
    lines += ["## SFT starting points\n", "| task | SFT success (measured) | episodes | command |", "|---|---|---|---|"]
    for task in envs.TASKS:
        path = os.path.join(REPO, "checkpoints", f"{task}-sft.pt")
        if os.path.exists(path):
            import torch
            info = torch.load(path, weights_only=True)["sft"]
            lines.append(f"| {task} | {info['success_rate']:.1%} | {info['eval_episodes']} | "
                         f"`python control_tasks.py expert --task {task} && python control_tasks.py sft --task {task}` |")
    for title, keep in (("Methods (per-step ratio)", lambda k: k[2] == RATIO[k[1]]),
                        ("Other ratios (SPPO's ablation; GRPO and RLOO's first round)",
                         lambda k: k[2] != RATIO[k[1]] or k[1] == "sppo")):
        lines += [f"\n## {title}\n", "| task | algo | ratio | seeds | episodes | final success | episodes to 80% | wall time per run |",
                  "|---|---|---|---|---|---|---|---|"]
        for key in sorted(k for k in groups if keep(k)):
            rs = groups[key]
            m, s = mean_std([r["final_success"] for r in rs])
            hits = sorted(r["episodes_to_80"] for r in rs if r["episodes_to_80"] is not None)
            e80 = f"{hits[len(hits) // 2]:,} ({len(hits)}/{len(rs)})" if hits else f"not reached (0/{len(rs)})"
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(rs)} | {min(r['episodes'] for r in rs):,} | "
                         f"{m:.2f} ± {s:.2f} | {e80} | "
                         f"{np.mean([r['wall_time'] for r in rs]):.0f} s |")
    for task in sorted({k[0] for k in groups}):
        for suffix, keep in (("", lambda k: k[2] == RATIO[k[1]]), ("_ratio", lambda k: k[1] == "sppo")):
            keys = [k for k in groups if k[0] == task and keep(k)]
            if not keys or (suffix and len(keys) < 2):
                continue
            with figure(os.path.join(OUT, f"{task}{suffix}.png")) as ax:
                for key in sorted(keys):
                    x, y = success_curves(groups[key])
                    band(ax, x, y, f"{key[2] if suffix else key[1]} ({len(groups[key])} seeds)")
                ax.set_xlabel("episodes"), ax.set_ylabel("success rate"), ax.set_ylim(-0.02, 1.02)
                ax.set_title(f"{task}{' (SPPO, ratio)' if suffix else ''}: mean over seeds, band = min–max")
                ax.legend()
    write_results("rlvr/rlvr", {"provenance": provenance(), "runs": [{k: v for k, v in r.items() if k != "curve"}
                                                                    for r in runs]}, "\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(BUDGET), choices=list(BUDGET))
    p.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--ablation", action="store_true", help="SPPO with the token, seq and joint ratios instead")
    p.add_argument("--episodes", type=int, default=0, help="episodes per run (default: BUDGET[task])")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (one CPU core each)")
    p.add_argument("--compile", action="store_true", help="sppo.py --compile on the native tasks: the same "
                   "learning up to float rounding, 1.3-3x the env steps per second (results/rlvr/speed.md)")
    p.add_argument("--render", action="store_true", help="only write summary.csv, the figures and rlvr.md")
    a = p.parse_args()
    if not a.render:
        runs = ([declare(t, "sppo", s, r, a.episodes or BUDGET[t], a.compile) for t in a.tasks if t in ABLATION_TASKS
                 for r in ("token", "seq", "joint") for s in a.seeds] if a.ablation else
                [declare(t, al, s, RATIO[al], a.episodes or BUDGET[t], a.compile) for t in a.tasks for al in a.algos
                 for s in a.seeds])
        run_all(runs, summarise, jobs=a.jobs)
    render()


if __name__ == "__main__":
    main()
