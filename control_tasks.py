"""The stages of the paper's control benchmark (SPPO §5.3): expert -> SFT -> RL, and measuring a policy.

They are built to look like LLM reasoning: a long sequence of actions, deterministic physics, and a
single verifiable reward, 1 on the final step if the outcome holds and 0 on every other step (gamma = 1).
Three stages mimic how a language model gets there:

    1. expert  ("pre-training"): sppo.py's own PPO on a dense, shaped reward      -> checkpoints/<task>-expert.pt
    2. SFT     behaviour cloning on the expert's SUCCESSFUL episodes only          -> checkpoints/<task>-sft.pt
               (few demonstrations, few steps: a policy that succeeds sometimes, as an SFT model does)
    3. RL      python sppo.py --task <task> --init checkpoints/<task>-sft.pt       the outcome reward only
               (with --lr 1e-4 --no-norm-adv --ratio token: README says why)

Usage:
    python control_tasks.py expert --task mountaincar            # stage 1 -> checkpoints/mountaincar-expert.pt
    python control_tasks.py sft --task mountaincar               # stage 2 -> checkpoints/mountaincar-sft.pt
    python sppo.py --task mountaincar --init checkpoints/mountaincar-sft.pt --lr 1e-4 --no-norm-adv --ratio token
    python control_tasks.py eval --checkpoint checkpoints/mountaincar-sft.pt --episodes 500
    python control_tasks.py gif --checkpoint checkpoints/mountaincar-sft.pt --out mountaincar.gif

The five tasks themselves (their horizons, success predicates, shaped rewards and the settings of each
stage) are environments: envs.py's TASKS and make_task, which sppo.py --task reads as well. This file
sits above the trainer: its expert stage IS sppo.py on the shaped reward.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import torch

import envs
import sppo
from envs import TASKS, get_task, make_task
from runlog import ConfigError, read_checkpoint, save_checkpoint


# ================================================================================================
# Stage 2 (SFT) and measuring a checkpoint. (Stage 1 is sppo.py itself, on the shaped reward.)
# ================================================================================================
def load_actor(path: str, task_name: str | None = None, device: str = "cpu"):
    """The actor of a checkpoint written by sppo.py or by `sft` -> (actor, sppo.Args it was trained with)."""
    ckpt = read_checkpoint(path, ("args", "actor"))
    saved = sppo.saved_args(ckpt, path)
    name = task_name or saved.task
    if not name:
        raise ConfigError(f"checkpoint {path} was not trained on a task; pass --task")
    task = get_task(name)
    if saved.task and saved.task != name or not saved.task and saved.env != task.env_id:
        trained = f"--task {saved.task}" if saved.task else f"--env {saved.env}"
        raise ConfigError(f"checkpoint {path} was trained on {trained}, not on --task {name} ({task.env_id}); "
                          f"pass a checkpoint of {name}" + (" or drop --task" if saved.task else ""))
    env = make_task(name, 1)
    actor = sppo.Actor(env.single_observation_space.shape[0], env.single_action_space, saved.hidden).to(device)
    try:
        actor.load_state_dict(ckpt["actor"])
    except RuntimeError:
        raise ConfigError(f"checkpoint {path} does not hold a policy for --task {name} "
                          f"(its observations or actions have other sizes)") from None
    return actor, dataclasses.replace(saved, task=name)


@torch.no_grad()
def success_rate(actor, task_name: str, episodes: int, seed: int = 0, batch: int = 250, device: str = "cpu") -> float:
    """Share of `episodes` sampled episodes (the policy samples, as in training) that succeed."""
    wins, done, k = 0, 0, 0
    while done < episodes:
        b = min(batch, episodes - done)
        env = make_task(task_name, b, device=device, seed=seed + k)
        wins += int(envs.rollout(env, actor.act, seed=seed * 7919 + k).success.sum())
        done, k = done + b, k + 1
    return wins / episodes


def sft(task_name: str, expert_path: str | None, out: str, seed: int = 0, demos: int = 0, bc_steps: int = 0,
        lr: float = 1e-3, minibatch: int = 256, eval_episodes: int = 500) -> dict:
    """Behaviour cloning on the expert's successful episodes: maximise log pi(a|s) of their actions.
    expert_path None: the task's classical controller. Returns what it measured; writes a checkpoint
    that sppo.py --init (and load_actor) reads."""
    task = get_task(task_name)
    demos, bc_steps = demos or task.demos, bc_steps or task.bc_steps
    if expert_path is None:
        if task.controller is None:
            raise ConfigError(f"{task_name} has no classical controller: pass the expert checkpoint")
        expert, expert_args, expert_path = task.controller(), sppo.Args(), f"{task.controller.__name__} (classical)"
    else:
        expert, expert_args = load_actor(expert_path, task_name)
    torch.manual_seed(seed)
    # collect successful episodes, B at a time, until there are `demos` of them
    env = make_task(task_name, 32)   # rollout() reseeds it: each batch's initial states come from its own seed
    obs, actions, found, tried = [], [], 0, 0
    while found < demos:
        if tried >= 50 * demos:
            raise ConfigError(f"the expert {expert_path} succeeded in {found} of {tried} episodes of {task_name}; "
                              "train a better one (python control_tasks.py expert)")
        batch = envs.rollout(env, expert.act, seed=seed * 7919 + tried)
        for b in batch.success.nonzero().flatten().tolist()[:demos - found]:
            real = batch.step_mask[:, b].bool()
            obs.append(batch.obs[real, b]), actions.append(batch.actions[real, b])
        found, tried = min(demos, found + int(batch.success.sum())), tried + 32
    obs, actions = torch.cat(obs), torch.cat(actions)                   # [N, obs_dim], [N(, act_dim)]
    # a fresh actor of the expert's size, cloned with minibatches of state-action pairs
    actor = sppo.Actor(obs.shape[1], env.single_action_space, expert_args.hidden)
    opt = torch.optim.Adam(actor.parameters(), lr=lr)
    for _ in range(bc_steps):
        idx = torch.randint(len(obs), (minibatch,))
        loss = -actor.logp_entropy(obs[idx], actions[idx])[0].mean()   # max likelihood: mean (and std) of pi
        opt.zero_grad()
        loss.backward()
        opt.step()
    rate = success_rate(actor, task_name, eval_episodes, seed=10_000 + seed)
    info = {"task": task_name, "expert": expert_path, "seed": seed, "demos": demos, "demo_steps": len(obs),
            "expert_tries": tried, "bc_steps": bc_steps, "success_rate": rate, "eval_episodes": eval_episodes}
    args = dataclasses.replace(sppo.Args(), task=task_name, hidden=expert_args.hidden, seed=seed, env=task.env_id)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_checkpoint(out, args=dataclasses.asdict(args), actor=actor.state_dict(), sft=info)
    return info


def expert(task_name: str, out: str, seed: int = 1, total_steps: int = 0) -> dict:
    """Stage 1: sppo.py's PPO on the task's shaped reward, with the task's expert settings. The run
    lives in runs/expert-<task>-<seed>/; its policy is copied to `out` with its measured success rate."""
    task = get_task(task_name)
    settings = {**task.expert, **({"total_steps": total_steps} if total_steps else {})}
    args = sppo.Args(task=task_name, reward="shaped", seed=seed, run_name=f"expert-{task_name}-{seed}", **settings)
    run = os.path.join("runs", args.run_name, "model.pt")
    if os.path.exists(run):
        raise ConfigError(f"{run} already exists: remove it to train the expert again")
    code = sppo.train(args)
    if code == 3:   # diverged: resuming would replay it (sppo.train has said where)
        raise ConfigError(f"the expert stage diverged; remove {os.path.dirname(run)} and train it again with other settings")
    if code != 0:
        raise ConfigError(f"the expert stage was interrupted; continue it with python sppo.py --resume {run}")
    actor, trained = load_actor(run)
    info = {"task": task_name, "seed": seed, **settings, "success_rate": success_rate(actor, task_name, 200, seed=10_000),
            "eval_episodes": 200}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_checkpoint(out, args=dataclasses.asdict(trained), actor=actor.state_dict(), expert=info)
    return info


def gif(path: str, out: str, seed: int = 0, task_name: str | None = None, fps: int = 30, every: int = 2) -> int:
    """One episode of a checkpoint's policy, rendered by gymnasium (the native envs match it step for
    step), written as an animated GIF. Returns the episode's length."""
    import gymnasium as gym
    from PIL import Image
    # the output path is checked before the episode is rendered, not after
    if os.path.isdir(out):
        raise ConfigError(f"--out {out} is a folder; pass a file name, e.g. {os.path.join(out, 'episode.gif')}")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ConfigError(f"--out {out}: the folder {os.path.dirname(out)} does not exist; create it or pass another path")
    animated = sorted(e for e, fmt in Image.registered_extensions().items() if fmt in Image.SAVE_ALL)
    if os.path.splitext(out)[1].lower() not in animated:
        raise ConfigError(f"--out {out}: the name must end in an extension of an animated image format, "
                          f"e.g. .gif (the image library writes {', '.join(animated)})")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--out {out}: the folder {folder} is not writable; pass another path")
    actor, args = load_actor(path, task_name)
    task = get_task(args.task)
    if "DISPLAY" not in os.environ:   # MuJoCo (Hopper) renders off-screen through EGL on a machine without a display
        os.environ.setdefault("MUJOCO_GL", "egl")
    if "DISPLAY" not in os.environ and "WAYLAND_DISPLAY" not in os.environ:
        # pygame (the other envs) needs no window for rgb_array frames; without this, SDL probes for a
        # display and prints "error: XDG_RUNTIME_DIR is invalid or not set" although the frames are fine
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        env = gym.make(task.env_id, render_mode="rgb_array", max_episode_steps=task.horizon)
        if task.goal_position is not None:
            env.unwrapped.goal_position = task.goal_position
        obs, _ = env.reset(seed=seed)
        frames, steps, done = [env.render()], 0, False
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"rendering {task.env_id} needs a package that is not installed ({e})") from None
    except Exception as e:   # e.g. no OpenGL for MuJoCo: MUJOCO_GL=egl or osmesa needs its system library
        raise ConfigError(f"cannot render {task.env_id} here ({type(e).__name__}: {str(e)[:120]}); "
                          "for MuJoCo try MUJOCO_GL=egl or MUJOCO_GL=osmesa") from None
    while not done:
        action, _ = actor.act(torch.as_tensor(obs, dtype=torch.float32)[None])
        obs, _, term, trunc, _ = env.step(action[0].numpy())
        done, steps = term or trunc, steps + 1
        if steps % every == 0 or done:
            frames.append(env.render())
    images = [Image.fromarray(f) for f in frames]
    try:
        images[0].save(out, save_all=True, append_images=images[1:], duration=1000 * every // fps, loop=0)
    except (OSError, ValueError) as e:   # a full disk, a plugin missing for the format, ...
        raise ConfigError(f"cannot write {out}: {e}") from None
    return steps


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="The control benchmark's stages: expert, sft, eval, gif.")
    p.add_argument("stage", choices=("expert", "sft", "eval", "gif"))
    p.add_argument("--task", default="", help=f"one of {', '.join(TASKS)} (eval and gif: read from the checkpoint)")
    p.add_argument("--checkpoint", default="", help="eval, gif: the model.pt or SFT checkpoint to use")
    p.add_argument("--expert", default="", help="sft: the expert checkpoint (default checkpoints/<task>-expert.pt)")
    p.add_argument("--out", default="", help="expert: checkpoints/<task>-expert.pt; sft: checkpoints/<task>-sft.pt; "
                                             "gif: <task>.gif")
    p.add_argument("--seed", type=int, default=0, help="0 to 2**32 - 1")
    p.add_argument("--episodes", type=int, default=500, help="eval, sft: episodes to measure the success rate on")
    p.add_argument("--total-steps", type=int, default=0, help="expert: budget in env steps (default: the task's)")
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        if a.stage in ("expert", "sft") and not a.task:
            raise ConfigError(f"{a.stage} needs --task (one of {', '.join(TASKS)})")
        if a.stage in ("eval", "gif") and not a.checkpoint:
            raise ConfigError(f"{a.stage} needs --checkpoint (a model.pt of sppo.py or an SFT checkpoint)")
        if a.episodes < 1:
            raise ConfigError(f"--episodes must be a positive integer, got {a.episodes}")
        if not 0 <= a.seed <= 2**32 - 1:   # sppo.py's rule
            raise ConfigError(f"--seed must be an integer from 0 to 2**32 - 1, got {a.seed}")
        if a.stage == "expert" and get_task(a.task).controller is not None:
            print(f"{a.task}'s expert is a classical controller ({get_task(a.task).controller.__name__}): "
                  f"nothing to train; run python control_tasks.py sft --task {a.task}")
        elif a.stage == "expert":
            out = a.out or os.path.join("checkpoints", f"{a.task}-expert.pt")
            info = expert(a.task, out, seed=a.seed or 1, total_steps=a.total_steps)
            print(f"expert for {a.task}: success rate {info['success_rate']:.1%} over 200 episodes; saved {out}")
        elif a.stage == "sft":
            out = a.out or os.path.join("checkpoints", f"{a.task}-sft.pt")
            default = None if get_task(a.task).controller else os.path.join("checkpoints", f"{a.task}-expert.pt")
            info = sft(a.task, a.expert or default, out, seed=a.seed,
                       eval_episodes=a.episodes)
            print(f"SFT policy for {a.task}: success rate {info['success_rate']:.1%} over {a.episodes} episodes "
                  f"({info['demos']} demonstrations, {info['bc_steps']} BC steps); saved {out}")
        elif a.stage == "eval":
            actor, args = load_actor(a.checkpoint, a.task or None)
            rate = success_rate(actor, args.task, a.episodes, seed=a.seed)
            print(f"{a.checkpoint} on {args.task}: success rate {rate:.1%} over {a.episodes} episodes")
        else:
            out = a.out or f"{a.task or 'episode'}.gif"
            steps = gif(a.checkpoint, out, seed=a.seed, task_name=a.task or None)
            print(f"wrote {out}: one episode of {steps} steps")
        return 0
    except (ConfigError, envs.EnvError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
