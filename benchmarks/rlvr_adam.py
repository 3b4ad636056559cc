"""Does PyTorch's fused Adam speed up the control benchmark's updates? (It does for the LLM demo: 4-8x per step.)

For each native task and for sppo and ppo, one rollout of the SFT policy at the paper's batch size is
kept fixed, and the learning part of sppo.py's update (advantages, then 8 epochs x 4 minibatches of
forward, backward, gradient clipping and Adam) is timed on it, alternating between two optimizers over
the same weights: torch.optim.Adam as sppo.py builds it (on a CPU a per-tensor loop of elementwise
operations) and the same with fused=True. Medians over --repeats, one thread -> results/rlvr/adam.{json,md}.

    python benchmarks/rlvr_adam.py
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
import envs  # noqa: E402
import sppo  # noqa: E402
from benchmarks.rlvr import COMMON  # noqa: E402  (the benchmark's RL settings: lr 1e-4, no advantage standardisation)
from benchmarks.runner import REPO, provenance, write_results  # noqa: E402

TASKS = ("precision-cartpole", "mountaincar", "pendulum")   # the native ones: their updates are the bottleneck


def measure(task: str, algo: str, repeats: int) -> dict:
    args = sppo.apply_task(sppo.parse_args(["--task", task, "--init", os.path.join(REPO, "checkpoints", f"{task}-sft.pt"),
                                            "--algo", algo, "--ratio", "token", *COMMON], sppo.Args))
    torch.manual_seed(0)
    env, actor, critic, default = sppo.build(args, torch.device("cpu"))
    sppo.init_actor(args, actor)
    batch = envs.rollout(env, actor.act, horizon=args.horizon, seed=0)
    fused = torch.optim.Adam([{"params": g["params"], "lr": g["lr"]} for g in default.param_groups], eps=1e-5, fused=True)
    assert fused.param_groups[0]["fused"] and not default.param_groups[0]["fused"]
    times = {"default": [], "fused": []}
    rollout, envs.rollout = envs.rollout, lambda *a, **k: batch    # the update re-uses the one batch
    try:
        for _ in range(repeats):
            for name, opt in (("default", default), ("fused", fused)):
                t0 = time.perf_counter()
                sppo.update(args, env, actor, critic, opt, seed=1)
                times[name].append(time.perf_counter() - t0)
    finally:
        envs.rollout = rollout
    d, f = statistics.median(times["default"]), statistics.median(times["fused"])
    return {"task": task, "algo": algo, "real_steps": int(batch.step_mask.sum()), "default_ms": 1e3 * d,
            "fused_ms": 1e3 * f, "saving": (d - f) / d}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=12)
    a = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for task in TASKS:
        for algo in ("sppo", "ppo"):
            rows.append(measure(task, algo, a.repeats))
            print(rows[-1], flush=True)
    lines = ["# Fused Adam in the control benchmark's update", "",
             f"The learning part of one update (8 epochs x 4 minibatches) on a fixed rollout of the SFT policy, "
             f"median of {a.repeats}, one thread, the two optimizers alternating.", "",
             "| task | algo | real steps in the batch | default Adam | fused Adam | saved |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['task']} | {r['algo']} | {r['real_steps']:,} | {r['default_ms']:.0f} ms | {r['fused_ms']:.0f} ms | "
              f"{r['saving']:.0%} |" for r in rows]
    write_results("rlvr/adam", {"provenance": provenance(), "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
