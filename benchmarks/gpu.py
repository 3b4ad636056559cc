"""What --device cuda buys: native environments, one update, training to solve -- GPU beside CPU.

Each part measures on the machine it runs on and writes results/gpu/<part>-<devices>.json (so the CPU
half and the CUDA half can run side by side, on separate cores); every run of this script then rebuilds
results/gpu.md from all the files present. Every figure keeps its device, commit and command.

    envs     native env steps/s at B = 64 ... 1M copies, torch on CUDA beside torch on the CPU (1 thread)
    update   wall-clock of ONE sppo.update() (rollout + 8 epochs x 4 minibatches) at B = 64 and 16,384,
             CartPole-v1 (episodes end early) and Pendulum-v1 (every episode is 200 steps)
    train    `python sppo.py` until CartPole-v1 is solved, cpu against cuda, at the defaults and wide;
             and training steps/s on MountainCar-v0 with a 1000-step horizon and a 0/1 outcome
    llm      benchmarks/llm_gpu.py writes results/gpu/llm-*.json; rendered here

Usage (on a machine with a GPU):
    python benchmarks/gpu.py --part envs update
    python benchmarks/gpu.py --part train --seeds 1 2 3
    python benchmarks/gpu.py --part envs update train --devices cpu   # the CPU half alone
    python benchmarks/gpu.py --render                 # only rebuild results/gpu.md
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402
import sppo  # noqa: E402
from benchmarks.cartpole import run_sppo  # noqa: E402
from benchmarks.env_throughput import fmt, time_native  # noqa: E402
from benchmarks.runner import RESULTS, load_json, median_range, provenance, save_json  # noqa: E402

PARTS = os.path.join(RESULTS, "gpu")


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def part_envs(args) -> dict:
    rows = []
    for env_id in envs.NATIVE_ENVS:
        for device, sizes in (("cuda", args.gpu_sizes), ("cpu", args.cpu_sizes)):
            if device not in args.devices:
                continue
            for B in sizes:
                steps = args.steps if B <= 16384 else max(20, args.steps // 5)   # 1M CPU copies: seconds a step
                seconds = time_native(env_id, B, device, steps, warmup=10, repeats=3)
                rows.append({"env": env_id, "device": device, "num_envs": B, "steps": steps,
                             "env_steps_per_s": B * steps / min(seconds)})
                print(rows[-1], flush=True)
    return {"rows": rows}


def time_one_update(env_id: str, B: int, device: str, repeats: int) -> dict:
    """Median wall-clock of sppo.update() at the default settings but B episodes per update. The
    actor stays the freshly initialised one (the update's optimizer step is undone each time), so
    every repeat times the same kind of batch."""
    a = sppo.Args(env=env_id, num_episodes=B, device=device)
    env, actor, critic, optimizer = sppo.build(a, torch.device(device))
    state = [{k: v.clone() for k, v in net.state_dict().items()} for net in (actor, critic)]
    times, lengths, steps = [], [], []
    for i in range(repeats + 1):                    # the first call warms up (CUDA context, kernels)
        sync(device)
        t0 = time.perf_counter()
        batch, _ = sppo.update(a, env, actor, critic, optimizer, seed=i)
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
            lengths.append(int(batch.lengths.max()))
            steps.append(int(batch.step_mask.sum()))
        for net, sd in zip((actor, critic), state):
            net.load_state_dict(sd)
    return {"env": env_id, "device": device, "num_episodes": B, "seconds": statistics.median(times),
            "rollout_length": statistics.median(lengths), "env_steps": statistics.median(steps)}


def part_update(args) -> dict:
    torch.set_num_threads(1)
    rows = []
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        for device in args.devices:
            for B in args.update_sizes:
                rows.append(time_one_update(env_id, B, device, args.repeats))
                print(rows[-1], flush=True)
    return {"rows": rows}


TRAIN_CONFIGS = {"defaults": [], "wide": ["--num-episodes", "2048", "--minibatches", "4", "--epochs", "2"]}
LONG = ["--env", "MountainCar-v0", "--horizon", "1000", "--reward", "success", "--no-stop-when-solved"]


def part_train(args) -> dict:
    runs = []
    for name, flags in TRAIN_CONFIGS.items():
        for device in args.devices:
            for seed in args.seeds:
                r = run_sppo(seed, [*flags, "--device", device], budget=args.budget)
                runs.append({"config": name, "flags": flags, "device": device, **r})
                print(runs[-1], flush=True)
    long_runs = []   # throughput only: from scratch a 0/1 MountainCar outcome is (almost) never reached
    for B in args.long_sizes:
        for device in args.devices:
            flags = [*LONG, "--num-episodes", str(B), "--minibatches", str(min(B, 4)), "--device", device]
            budget = (args.long_updates if B <= 8 else 2) * 1000 * B   # a few updates, or 2 wide ones
            r = run_sppo(1, flags, budget=budget)
            long_runs.append({"flags": flags, "device": device, "num_episodes": B, **r})
            print(long_runs[-1], flush=True)
    return {"runs": runs, "long_runs": long_runs}


def render() -> None:
    parts = {}   # part -> its files merged: the lists concatenated, every file's provenance kept
    for file in sorted(os.listdir(PARTS)) if os.path.isdir(PARTS) else []:
        name = file.split("-")[0].split(".")[0]
        if name in ("envs", "update", "train", "llm") and file.endswith(".json"):
            data = load_json(os.path.join(PARTS, file))
            merged = parts.setdefault(name, {"provenances": []})
            merged["provenances"].append(data.pop("provenance"))
            for k, v in data.items():
                merged[k] = merged.get(k, []) + v if isinstance(v, list) else v
    out = ["# The GPU path, measured", "",
           "Every section names the device it ran on, the commit and the command; the CPU figures beside the "
           "GPU ones are from the same machine's CPU (torch on 1 thread, as `sppo.py`'s default), unless a "
           "section says otherwise.", "",
           "The figures below come from one sitting of `TOKENIZER=<default model folder> bash benchmarks/gpu_all.sh` "
           "(the CUDA timings, their CPU halves and the test suite in three lanes on separate cores); its logs are in "
           "`results/gpu/logs/`.", ""]

    def source(p):
        return "\n".join(f"- Device: {prov['gpu']}; CPU: {prov['machine']}; torch {prov['torch']}; commit "
                         f"{prov['commit']}. Command: `{prov['command'].split(' --note ')[0]}`"
                         + (f". {prov['note']}" if prov.get("note") else "")
                         for prov in p["provenances"])

    if "envs" in parts:
        rows = parts["envs"]["rows"]
        sizes = sorted({r["num_envs"] for r in rows})
        out += ["## Native environments: env steps per second", "",
                "Random actions sampled on the env's device, autoresets included, best of 3 timed repeats.", "",
                "| env | device | " + " | ".join(f"B={B:,}" for B in sizes) + " |", "|---|---|" + "---:|" * len(sizes)]
        for env_id in dict.fromkeys(r["env"] for r in rows):
            for device in ("cuda", "cpu"):
                got = {r["num_envs"]: r["env_steps_per_s"] for r in rows if r["env"] == env_id and r["device"] == device}
                if got:
                        out.append(f"| {env_id} | {device} | " + " | ".join(fmt(got.get(B)) for B in sizes) + " |")
        out += ["", source(parts["envs"]), ""]
    if "update" in parts:
        out += ["## One update: 64 episodes against 16,384", "",
                "Wall-clock of one `sppo.update()` at the default settings (rollout, then 8 epochs × 4 minibatches "
                "of clipped steps) with the freshly initialised policy; median of the repeats after a warm-up. "
                "T = the batch's longest episode, which sets the number of sequential env steps.", "",
                "| env | device | B | T | real env steps | seconds | env steps/s |", "|---|---|---:|---:|---:|---:|---:|"]
        for r in parts["update"]["rows"]:
            out.append(f"| {r['env']} | {r['device']} | {r['num_episodes']:,} | {r['rollout_length']:.0f} | "
                       f"{r['env_steps']:,.0f} | {r['seconds']:.3f} | {fmt(r['env_steps'] / r['seconds'])} |")
        out += ["", source(parts["update"]), ""]
    if "train" in parts:
        runs = parts["train"]["runs"]
        out += ["## Training: `python sppo.py --env CartPole-v1` until solved", "",
                "Solved = the last-20 mean return first reaches 475; wall-clock is the training loop's "
                "(imports and set-up excluded); median (min–max) over the solved seeds.", "",
                "| flags | device | solved | wall-clock s | env steps | env steps/s |", "|---|---|---|---|---|---:|"]
        for name, flags in TRAIN_CONFIGS.items():
            for device in ("cuda", "cpu"):
                rs = [r for r in runs if r["config"] == name and r["device"] == device]
                if not rs:
                    continue
                out.append(f"| `{' '.join(flags) or '(defaults)'}` | {device} | {sum(r['solved'] for r in rs)}/{len(rs)} | "
                           f"{median_range(rs, 'wall_s')} | {median_range(rs, 'env_steps')} | "
                           f"{fmt(statistics.median(r['steps_per_s'] for r in rs))} |")
        out += ["", "Long horizon, throughput only (`" + " ".join(LONG) + "`, seed 1; from scratch the 0/1 outcome "
                "is almost never reached, so this measures speed, not learning):", "",
                "| episodes per update | device | env steps/s (training loop) |", "|---:|---|---:|"]
        for r in parts["train"]["long_runs"]:
            out.append(f"| {r['num_episodes']:,} | {r['device']} | {fmt(r['steps_per_s'])} |")
        out += ["", source(parts["train"]), ""]
    if "llm" in parts:
        from benchmarks.llm_gpu import markdown   # the table from the rows of every sitting
        out += markdown(parts["llm"]["rows"]) + ["", source(parts["llm"]), ""]
    with open(os.path.join(RESULTS, "gpu.md"), "w") as f:
        f.write("\n".join(out))
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", nargs="*", default=[], choices=["envs", "update", "train"])
    p.add_argument("--gpu-sizes", nargs="+", type=int, default=[64, 1024, 16384, 262144, 1048576])
    p.add_argument("--cpu-sizes", nargs="+", type=int, default=[64, 1024, 16384, 262144])
    p.add_argument("--steps", type=int, default=100, help="timed env steps per repeat (fewer above 16k copies)")
    p.add_argument("--repeats", type=int, default=3, help="timed updates per configuration (update part)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--budget", type=int, default=5_000_000, help="env-step budget per CartPole run")
    p.add_argument("--devices", nargs="+", default=["cuda", "cpu"], choices=["cuda", "cpu"])
    p.add_argument("--update-sizes", nargs="+", type=int, default=[64, 1024, 16384], help="B for the update part")
    p.add_argument("--long-sizes", nargs="+", type=int, default=[8, 2048], help="B for the long-horizon runs")
    p.add_argument("--long-updates", type=int, default=20, help="updates of the long-horizon run at B <= 8")
    p.add_argument("--note", default="", help="written beside the figures (e.g. what else ran on the machine)")
    p.add_argument("--render", action="store_true", help="only rebuild results/gpu.md from results/gpu/*.json")
    args = p.parse_args()
    if "cuda" in args.devices and args.part and not torch.cuda.is_available():
        p.error("--devices cuda: no CUDA device is available here (pass --devices cpu for the CPU half alone)")
    os.makedirs(PARTS, exist_ok=True)
    for part in args.part:
        data = {"envs": part_envs, "update": part_update, "train": part_train}[part](args)
        data["provenance"] = {**provenance(), "note": args.note}
        save_json(os.path.join(PARTS, f"{part}-{'-'.join(args.devices)}.json"), data, indent=2)
    render()


if __name__ == "__main__":
    main()
