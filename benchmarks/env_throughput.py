"""Environment steps per second: native torch envs (envs.py) against gymnasium's vector envs.

For each env id and number of copies B, `steps` batched steps with random actions are timed after
`warmup` untimed ones, `repeats` times; throughput = B * steps / seconds of the fastest repeat (the
least disturbed by other processes: the load average is recorded too). Implementations:
  torch-cpu / torch-cuda   envs.NATIVE_ENVS (actions sampled on the env's device)
  gym-sync                 gymnasium.vector.SyncVectorEnv (a Python loop over B envs; B <= 1024 only)
  gym-numpy                gymnasium's own numpy CartPoleVectorEnv (CartPole only)
Autoresets happen inside the timed steps, as in training. Writes results/env_throughput.{json,md}.

    python benchmarks/env_throughput.py                       # CPU (+ CUDA when present), ~2 min on 2 cores
    python benchmarks/env_throughput.py --device cuda --gpu-sizes 1024 65536 1048576
"""
import argparse
import os
import platform
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402
from benchmarks.runner import provenance, write_results  # noqa: E402

SYNC_MAX = 1024  # SyncVectorEnv steps its copies one by one in Python: beyond this it only costs time


def time_native(env_id, B, device, steps, warmup, repeats):
    env = envs.NATIVE_ENVS[env_id](B, device=device, seed=0)
    space, dev = env.single_action_space, env.device
    if isinstance(space, gym.spaces.Discrete):
        sample = lambda: torch.randint(space.n, (B,), device=dev)
    else:
        low = torch.as_tensor(space.low, device=dev)
        span = torch.as_tensor(space.high, device=dev) - low
        sample = lambda: low + span * torch.rand(B, *space.shape, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    env.reset(seed=0)
    for _ in range(warmup):
        env.step(sample())
    seconds = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            env.step(sample())
        sync()  # CUDA kernels run asynchronously: wait for the last one before stopping the clock
        seconds.append(time.perf_counter() - t0)
    return seconds


def time_gym(vec, B, steps, warmup, repeats):
    rng = np.random.default_rng(0)
    space = vec.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        sample = lambda: rng.integers(0, space.n, size=B)
    else:
        sample = lambda: rng.uniform(space.low, space.high, size=(B,) + space.shape).astype(np.float32)
    vec.reset(seed=0)
    for _ in range(warmup):
        vec.step(sample())
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            vec.step(sample())
        seconds.append(time.perf_counter() - t0)
    vec.close()
    return seconds


def fmt(x):
    return "—" if x is None else f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", nargs="+", default=list(envs.NATIVE_ENVS), choices=list(envs.NATIVE_ENVS))
    p.add_argument("--sizes", nargs="+", type=int, default=[1, 64, 1024, 16384], help="B on CPU")
    p.add_argument("--gpu-sizes", nargs="+", type=int, default=[1, 64, 1024, 16384, 131072, 1048576])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="native envs on cpu, cuda, or auto = cpu and cuda when present (gymnasium always on CPU)")
    p.add_argument("--steps", type=int, default=100, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the fastest is reported")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0 = torch's default). 1 matches the single-threaded gymnasium "
                        "baselines, and on a small shared machine a parallel region stalls whenever another "
                        "process holds one of its cores (2 threads measured 4x slower at B=16384 under load)")
    p.add_argument("--no-gym", action="store_true", help="skip the gymnasium baselines")
    p.add_argument("--gym-only-envs", nargs="*", default=["LunarLander-v3", "Hopper-v5"],
                   help="ids with no native version: gymnasium's sync against its async vector env (B <= 64), "
                        "where their extra is installed (pip install 'gymnasium[box2d,mujoco]')")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []), "cpu": ["cpu"], "cuda": ["cuda"]}[args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")

    load_before = os.getloadavg()  # other processes on the machine slow every figure below
    rows = []  # one per (env, implementation, B)

    def record(env_id, impl, B, seconds):
        rate = B * args.steps / min(seconds)
        rows.append({"env": env_id, "impl": impl, "num_envs": B, "steps": args.steps, "seconds": seconds,
                     "env_steps_per_s": rate})
        print(f"{env_id:26s} {impl:10s} B={B:<8d} {rate:14,.0f} steps/s", flush=True)

    for env_id in args.envs:
        for device in devices:
            for B in (args.sizes if device == "cpu" else args.gpu_sizes):
                record(env_id, f"torch-{device}", B, time_native(env_id, B, device, args.steps, args.warmup, args.repeats))
        if args.no_gym:
            continue
        for B in args.sizes:
            if B <= SYNC_MAX:
                vec = gym.make_vec(env_id, num_envs=B, vectorization_mode="sync")
                record(env_id, "gym-sync", B, time_gym(vec, B, args.steps, args.warmup, args.repeats))
            if env_id == "CartPole-v1":
                vec = CartPoleVectorEnv(num_envs=B)
                record(env_id, "gym-numpy", B, time_gym(vec, B, args.steps, args.warmup, args.repeats))

    for env_id in [] if args.no_gym else args.gym_only_envs:
        for B in [b for b in args.sizes if b <= 64]:
            for mode in ("sync", "async"):
                try:
                    vec = gym.make_vec(env_id, num_envs=B, vectorization_mode=mode)
                except gym.error.DependencyNotInstalled as e:
                    print(f"{env_id}: skipped ({e})", flush=True)
                    break
                record(env_id, f"gym-{mode}", B, time_gym(vec, B, args.steps, args.warmup, args.repeats))

    prov = provenance()
    prov.update(platform=platform.platform(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                load_average_before=load_before, load_average_after=os.getloadavg(),
                device_names={d: torch.cuda.get_device_name() if d == "cuda" else prov["machine"] for d in devices})
    sizes = sorted({r["num_envs"] for r in rows})
    lines = ["# Environment throughput (env steps per second, higher is better)", "",
             f"Best of {args.repeats} x {args.steps} timed steps after {args.warmup} warm-up steps, random actions, "
             "autoresets included; "
             f"gymnasium's SyncVectorEnv only up to B = {SYNC_MAX}. Platform: {prov['platform']}, "
             f"torch threads: {prov['torch_threads']}; 1-min load average before/after: "
             f"{load_before[0]:.2f}/{prov['load_average_after'][0]:.2f}.", "",
             "| env | implementation | " + " | ".join(f"B={B}" for B in sizes) + " |",
             "|---|---|" + "---:|" * len(sizes)]
    for env_id in dict.fromkeys(r["env"] for r in rows):
        for impl in dict.fromkeys(r["impl"] for r in rows if r["env"] == env_id):
            got = {r["num_envs"]: r["env_steps_per_s"] for r in rows if r["env"] == env_id and r["impl"] == impl}
            lines.append(f"| {env_id} | {impl} | " + " | ".join(fmt(got.get(B)) for B in sizes) + " |")
    write_results("env_throughput", {"provenance": prov, "config": vars(args), "results": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
