"""Where one update of the control benchmark spends its time, per task, at the paper's batch sizes.

For each task (one sppo.py update = B episodes of up to H steps, then the clipped updates) it times:
the policy's act() per step, the env's step() per step, the whole rollout, and the rest of the update
(advantages, epochs x minibatches of forward/backward), on the SFT checkpoint's policy. Figures are
medians over --repeats updates on one thread, written to results/rlvr/speed.{json,md}. The native
tasks are timed twice: eagerly, and with sppo.py --compile (the rollout's steps compiled in chunks;
its compilation, timed apart, is the first rollout's time with torch's on-disk cache as it is).

Usage:
    python benchmarks/rlvr_speed.py                     # every task, --algo sppo and ppo
    python benchmarks/rlvr_speed.py --tasks mountaincar --repeats 5
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
from benchmarks.runner import REPO, provenance, write_results  # noqa: E402


def per_call(fn, n):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def measure(task: str, algo: str, repeats: int, compile: bool = False) -> dict:
    args = sppo.apply_task(sppo.Args(task=task, algo=algo, ratio="token" if algo == "ppo" else "seq", compile=compile,
                                     init=os.path.join(REPO, "checkpoints", f"{task}-sft.pt")))
    env, actor, critic, optimizer = sppo.build(args, torch.device("cpu"))
    sppo.init_actor(args, actor)
    obs = env.reset(seed=0)
    action, _ = actor.act(obs)
    act_us = per_call(lambda: actor.act(obs), 300) * 1e6      # eager, one step at a time
    step_us = per_call(lambda: env.step(action), 300) * 1e6
    compile_s = None
    if compile:
        torch._dynamo.reset()   # compile for this env and policy afresh, as a new sppo.py process would
        t = time.perf_counter()
        envs.rollout(env, actor.act, horizon=args.horizon, seed=0, compile=True)
        compile_s = time.perf_counter() - t
    rollouts, updates, steps = [], [], []
    for k in range(repeats):
        t = time.perf_counter()
        batch = envs.rollout(env, actor.act, horizon=args.horizon, seed=k, compile=compile)
        rollouts.append(time.perf_counter() - t)
        t = time.perf_counter()
        _, _ = sppo.update(args, env, actor, critic, optimizer, seed=k)   # rollout + advantages + clipped steps
        updates.append(time.perf_counter() - t)
        steps.append(int(batch.step_mask.sum()))
    r, u = statistics.median(rollouts), statistics.median(updates)
    return {"task": task, "algo": algo, "compile": compile, "compile_s": compile_s, "episodes": args.num_episodes,
            "horizon": args.horizon, "act_us": act_us, "step_us": step_us, "rollout_s": r, "learn_s": max(u - r, 0.0),
            "steps_per_update": statistics.median(steps), "steps_per_s": statistics.median(steps) / u}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", choices=list(envs.TASKS), default=[
        t for t in envs.TASKS if os.path.exists(os.path.join(REPO, "checkpoints", f"{t}-sft.pt"))])
    p.add_argument("--algos", nargs="+", default=["sppo", "ppo"])
    p.add_argument("--repeats", type=int, default=5)   # episode lengths vary from seed to seed: 5 steadies the medians
    a = p.parse_args()
    torch.set_num_threads(1)
    rows = [measure(t, al, a.repeats, compile) for t in a.tasks for al in a.algos
            for compile in ((False, True) if envs.TASKS[t].env_id in envs.NATIVE_ENVS else (False,))]
    lines = ["# Where an update of the control benchmark spends its time (one CPU thread)\n",
             "rollout: eager, or compiled (`sppo.py --compile`, native envs; compile = its first rollout). "
             "act and env step: eager, per call.\n",
             "| task | algo | rollout | B × H | act per step | env step per step | rollout | rest of the update | env steps per update | env steps/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mode = f"compiled ({r['compile_s']:.0f} s)" if r["compile"] else "eager"
        lines.append(f"| {r['task']} | {r['algo']} | {mode} | {r['episodes']} × {r['horizon']} | {r['act_us']:.0f} µs | "
                     f"{r['step_us']:.0f} µs | {r['rollout_s'] * 1e3:.0f} ms | {r['learn_s'] * 1e3:.0f} ms | "
                     f"{r['steps_per_update']:,.0f} | {r['steps_per_s']:,.0f} |")
    write_results("rlvr/speed", {"provenance": provenance(), "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
