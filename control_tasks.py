"""The stages of the paper's control benchmark (SPPO §5.3): expert -> SFT -> RL, and watching any policy.

They are built to look like LLM reasoning: a long sequence of actions, deterministic physics, and a
single verifiable reward, 1 on the final step if the outcome holds and 0 on every other step (gamma = 1).
Three stages mimic how a language model gets there:

    1. expert  ("pre-training"): sppo.py's own PPO on a dense, shaped reward      -> checkpoints/<task>-expert.pt
    2. SFT     behaviour cloning on the expert's SUCCESSFUL episodes only          -> checkpoints/<task>-sft.pt
               (few demonstrations, few steps: a policy that succeeds sometimes, as an SFT model does)
    3. RL      python sppo.py --task <task> --init checkpoints/<task>-sft.pt       the outcome reward only
               (the task sets the RL stage's --lr 1e-4 --no-norm-adv --ratio token: README says why)

Usage:
    python control_tasks.py expert --task mountaincar            # stage 1 -> checkpoints/mountaincar-expert.pt
    python control_tasks.py sft --task mountaincar               # stage 2 -> checkpoints/mountaincar-sft.pt
    python sppo.py --task mountaincar --init checkpoints/mountaincar-sft.pt                           # stage 3
    python control_tasks.py eval checkpoints/mountaincar-sft.pt  # success rate over 500 seeded episodes
    python control_tasks.py watch runs/<run>                     # any run of sppo.py: eval + runs/<run>/episode.gif
    python control_tasks.py eval --help                          # each command's options, with their defaults

eval, gif and watch read every policy this project writes: a run of sppo.py on any gymnasium id (mean ±
std of the return, and the success rate where the env has a success predicate), a --task run, an expert
or SFT checkpoint (the success rate). Each is measured on what it was trained on; --judge-by <task>
measures a policy under another task's rule of the same env, and says so.

The five tasks themselves (their horizons, success predicates, shaped rewards and the settings of each
stage) are environments: envs.py's TASKS and make_task, which sppo.py --task reads as well. This file
sits above the trainer: its expert stage IS sppo.py on the shaped reward.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np
import torch

import envs
import sppo
from envs import TASKS, get_task, make_task
from runlog import ConfigError, read_checkpoint, save_checkpoint

EVAL_BATCH = 250    # episodes rolled out at once by evaluate(); part of what a seed means, so fixed
EVAL_SEED = 0       # the seed of the measurement stored in expert and SFT checkpoints, and eval's default


# ================================================================================================
# Reading a policy back: from a run folder or a checkpoint file, on what it was trained on.
# ================================================================================================
def checkpoint_file(path: str) -> str:
    """A run folder (runs/<run>) -> its model.pt; a file -> itself (read_checkpoint refuses a missing one)."""
    if not os.path.isdir(path):
        return path
    model = os.path.join(path, "model.pt")
    if os.path.isfile(model):
        return model
    held = sorted(f for f in os.listdir(path) if f.endswith(".pt"))
    raise ConfigError(f"{path} is a folder without model.pt (a run of sppo.py saves one at its first checkpoint); "
                      + (f"pass one of its checkpoints: {', '.join(os.path.join(path, f) for f in held[:4])}" if held else
                         "pass a run folder runs/<run> or a checkpoint file"))


def trained_on(args: sppo.Args) -> str:
    """What a checkpoint's policy was trained on, as the flag that chose it: '--task pendulum', '--env CartPole-v1'."""
    return f"--task {args.task}" if args.task else f"--env {args.env}"


def refusal(path: str, saved: sppo.Args, task_name: str) -> str:
    """Why a checkpoint trained on one thing is not measured as another: the start of a ConfigError's line."""
    return (f"checkpoint {path} was trained on {trained_on(saved)}, not on --task {task_name} "
            f"({get_task(task_name).env_id}); pass a checkpoint of {task_name}")


def load_actor(path: str, task_name: str | None = None, device: str = "cpu", judge_by: str = ""):
    """The actor of any checkpoint this project writes (a run folder or model.pt of sppo.py, or a checkpoint
    of `expert` or `sft`) -> (actor, the sppo.Args it was trained with).

    task_name: the task the caller expects; a checkpoint trained on anything else is refused (ConfigError),
    so that nothing silently measures a policy by a rule it was not trained for. judge_by: a task whose
    rule (horizon, success predicate) the policy is to be measured under although it was trained on
    another; allowed only where the task's env is the policy's own. The returned Args then name that task,
    at its own horizon."""
    path = checkpoint_file(path)
    ckpt = read_checkpoint(path, ("args", "actor"))
    saved = sppo.saved_args(ckpt, path)
    if task_name and task_name != saved.task:
        raise ConfigError(refusal(path, saved, task_name))
    if judge_by:
        task = get_task(judge_by)
        if task.env_id != saved.env:   # another env: the policy's inputs and outputs mean nothing there
            raise ConfigError(f"--judge-by {judge_by} measures a policy in {task.env_id}; checkpoint {path} holds a "
                              f"policy of {saved.env} ({trained_on(saved)})")
        saved = dataclasses.replace(saved, task=judge_by, horizon=0)   # horizon 0: the task's own
    # the env's spaces size the actor: one copy is built for them (a native env costs nothing, a gymnasium one ~ms)
    env = make_task(saved.task, 1, backend=saved.backend) if saved.task else envs.make_env(saved.env, 1, backend=saved.backend)
    actor = sppo.Actor(env.single_observation_space.shape[0], env.single_action_space, saved.hidden).to(device)
    env.close()
    try:
        actor.load_state_dict(ckpt["actor"])
    except RuntimeError:
        raise ConfigError(f"checkpoint {path} does not hold a policy for {trained_on(saved)} "
                          f"(its observations or actions have other sizes)") from None
    return actor, saved


# ================================================================================================
# Measuring a policy: one function, seeded end to end, for the numbers stored AND for `eval`.
# ================================================================================================
def eval_seed(seed: int, k: int) -> int:
    """The seed of evaluation batch k: numpy's SeedSequence mixes (seed, k) with a tag of its own, so the
    initial states an evaluation draws are not those that training updates (seed * 1000003 + update) or
    SFT's demonstrations (seed * 7919 + n) drew from their small, structured seeds."""
    return int(np.random.SeedSequence([seed, k, 0xE7A1]).generate_state(1)[0])


@torch.no_grad()
def evaluate(actor, args: sppo.Args, episodes: int, seed: int = EVAL_SEED) -> dict:
    """`episodes` sampled episodes of the policy (it samples, as in training) on what `args` names: a --task
    (its 0/1 outcome) or a gymnasium id (its own reward), at args.horizon (0: the task's or env's own).

    Seeded end to end: the initial states from eval_seed(seed, k) per batch of EVAL_BATCH episodes, the
    actions from torch's generator seeded with `seed` -- on a copy of its state (torch.random.fork_rng),
    so that measuring a policy never moves the caller's random numbers. Same seed, same numbers.

    Returns {"episodes", "seed", "success_rate" (None where the env has no success predicate),
    "successes" (count), "mean_return", "std_return" (over episodes, unbiased), "mean_length"}."""
    returns, lengths, wins, judged = [], [], 0, True
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # how a matmul splits over threads can move its last bit: one thread, one answer
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for k, start in enumerate(range(0, episodes, EVAL_BATCH)):
                b, s = min(EVAL_BATCH, episodes - start), eval_seed(seed, k)
                env = (make_task(args.task, b, seed=s, backend=args.backend, horizon=args.horizon) if args.task else
                       envs.make_env(args.env, b, seed=s, backend=args.backend, max_episode_steps=args.horizon or None))
                try:
                    batch = envs.rollout(env, actor.act, seed=s)
                finally:
                    env.close()
                returns.append(batch.returns), lengths.append(batch.lengths)
                if batch.success is None:   # an env without a success predicate (envs.SUCCESS): its return only
                    judged = False
                else:
                    wins += int(batch.success.sum())
    finally:
        torch.set_num_threads(threads)
    returns, lengths = torch.cat(returns), torch.cat(lengths)
    return {"episodes": episodes, "seed": seed, "success_rate": wins / episodes if judged else None,
            "successes": wins if judged else None, "mean_return": float(returns.mean()),
            "std_return": float(returns.std()) if episodes > 1 else 0.0, "mean_length": float(lengths.mean())}


def horizon_of(args: sppo.Args) -> int:
    """The episode length limit H a policy is measured at: the run's --horizon, else the task's, else the env's."""
    return args.horizon or (get_task(args.task).horizon if args.task else envs.spec(args.env).max_episode_steps)


def report(path: str, args: sppo.Args, result: dict, stored: dict | None = None, judged_from: str = "") -> str:
    """The line(s) `eval` prints: what was measured (evaluate's `result`), on what (`args`), and how it compares
    with the number the checkpoint stores (`stored`: its "sft" or "expert" entry). judged_from: what the policy
    was trained on, where it is measured under another task's rule (--judge-by)."""
    where = (f"{args.task} ({args.env}, H = {horizon_of(args)})" if args.task else f"{args.env} (H = {horizon_of(args)})")
    if judged_from:
        where = f"{args.task}'s rule ({args.env}, H = {horizon_of(args)}; a policy trained on {judged_from})"
    n, seed = result["episodes"], result["seed"]
    if args.task:   # the return of a task IS its 0/1 outcome: the success rate says it all
        line = f"{path} on {where}: success rate {result['success_rate']:.1%} ({result['successes']} of {n} episodes, seed {seed})"
    else:
        line = (f"{path} on {where}: return {result['mean_return']:.1f} ± {result['std_return']:.1f} "
                f"(mean ± std over {n} episodes, seed {seed})")
        if result["success_rate"] is not None:
            line += f", success rate {result['success_rate']:.1%}"
    if not stored or "success_rate" not in stored:
        return line
    was = f"{stored['success_rate']:.1%} over {stored['eval_episodes']} episodes"
    if "eval_seed" not in stored:
        return line + f"\nstored in the checkpoint: {was}, measured by an older evaluation whose actions were not seeded"
    was += f" at seed {stored['eval_seed']}"
    if (stored["eval_episodes"], stored["eval_seed"]) != (n, seed):
        return line + (f"\nstored in the checkpoint: {was} (--episodes {stored['eval_episodes']} --seed "
                       f"{stored['eval_seed']} repeats that measurement)")
    if stored["success_rate"] == result["success_rate"]:
        return line + f"\nstored in the checkpoint: {was}, the same measurement"
    return line + (f"\nstored in the checkpoint: {was}: the same seed and episodes gave another number here "
                   "(another version of this code, or another machine's floating point, measured it)")


# ================================================================================================
# Stage 2 (SFT). (Stage 1 is sppo.py itself, on the shaped reward: `expert` below.)
# ================================================================================================
def sft(task_name: str, expert_path: str | None, out: str, seed: int = 0, demos: int = 0, bc_steps: int = 0,
        lr: float = 1e-3, minibatch: int = 256, eval_episodes: int = 500) -> dict:
    """Behaviour cloning on the expert's successful episodes: maximise log pi(a|s) of their actions.
    expert_path None: the task's classical controller. Returns what it measured (evaluate() at EVAL_SEED,
    the number `eval` repeats); writes a checkpoint that sppo.py --init (and load_actor) reads."""
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
    args = dataclasses.replace(sppo.Args(), task=task_name, hidden=expert_args.hidden, seed=seed, env=task.env_id)
    measured = evaluate(actor, args, eval_episodes, seed=EVAL_SEED)
    info = {"task": task_name, "expert": expert_path, "seed": seed, "demos": demos, "demo_steps": len(obs),
            "expert_tries": tried, "bc_steps": bc_steps, "success_rate": measured["success_rate"],
            "eval_episodes": eval_episodes, "eval_seed": EVAL_SEED}
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
    info = {"task": task_name, "seed": seed, **settings,
            "success_rate": evaluate(actor, trained, 200, seed=EVAL_SEED)["success_rate"], "eval_episodes": 200,
            "eval_seed": EVAL_SEED}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_checkpoint(out, args=dataclasses.asdict(trained), actor=actor.state_dict(), expert=info)
    return info


# ================================================================================================
# Watching a policy: one episode, rendered by gymnasium, as an animated GIF that says how it ended.
# ================================================================================================
def gif_path(checkpoint: str, out: str = "") -> str:
    """Where the GIF goes: `out`, else beside the checkpoint (runs/<run>/model.pt -> runs/<run>/episode.gif,
    checkpoints/pendulum-sft.pt -> checkpoints/pendulum-sft.gif). Refuses (ConfigError) a path it could not
    write -- before anything is loaded or rendered."""
    from PIL import Image
    if not out:
        file = checkpoint_file(checkpoint)
        stem = os.path.splitext(os.path.basename(file))[0]
        out = os.path.join(os.path.dirname(file), "episode.gif" if stem == "model" else stem + ".gif")
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
    return out


def captioned(frame: np.ndarray, text: str, colour: tuple[int, int, int]):
    """A rendered frame [H, W, 3] with a strip below it holding `text` on `colour` -> a PIL image."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font = ImageFont.load_default(size=max(12, frame.shape[1] // 40))
    except TypeError:   # Pillow < 10.1: one bitmap size only
        font = ImageFont.load_default()
    strip = max(20, frame.shape[1] // 24)
    image = Image.new("RGB", (frame.shape[1], frame.shape[0] + strip), colour)
    image.paste(Image.fromarray(frame), (0, 0))
    ImageDraw.Draw(image).text((6, frame.shape[0] + strip // 6), text, fill=(255, 255, 255), font=font)
    return image


@torch.no_grad()
def gif(path: str, out: str = "", seed: int = 0, task_name: str | None = None, judge_by: str | None = None,
        fps: int = 30, every: int = 2) -> dict:
    """One episode of a checkpoint's policy, rendered by gymnasium (the native envs match it step for step),
    written as an animated GIF whose caption counts the steps and whose last frame, held two seconds,
    says how the episode ended: success or failure where there is a success predicate, the return where
    there is none. Seeded: the initial state from `seed`, the actions from torch seeded with it.

    Returns {"out", "steps", "return" (the env's own reward, summed), "success" (bool, or None)}."""
    import gymnasium as gym
    from PIL import Image
    out = gif_path(path, out)   # checked before the episode is rendered, not after
    actor, args = load_actor(path, task_name, judge_by=judge_by)
    task = get_task(args.task) if args.task else None
    registered = envs.spec(args.env)   # imports the module of a "module:Name-vN" id
    predicate = envs.SUCCESS.get(registered.id)
    if "DISPLAY" not in os.environ:   # MuJoCo (Hopper) renders off-screen through EGL on a machine without a display
        os.environ.setdefault("MUJOCO_GL", "egl")
    if "DISPLAY" not in os.environ and "WAYLAND_DISPLAY" not in os.environ:
        # pygame (the other envs) needs no window for rgb_array frames; without this, SDL probes for a
        # display and prints "error: XDG_RUNTIME_DIR is invalid or not set" although the frames are fine
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        env = gym.make(args.env, render_mode="rgb_array", max_episode_steps=horizon_of(args))
        if task is not None and task.goal_position is not None:
            env.unwrapped.goal_position = task.goal_position
        obs, _ = env.reset(seed=seed)
        frames = [env.render()]
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"rendering {args.env} needs a package that is not installed ({e})") from None
    except Exception as e:   # e.g. no OpenGL for MuJoCo: MUJOCO_GL=egl or osmesa needs its system library
        raise ConfigError(f"cannot render {args.env} here ({type(e).__name__}: {str(e)[:120]}); "
                          "for MuJoCo try MUJOCO_GL=egl or MUJOCO_GL=osmesa") from None
    obs_space, act_space = env.observation_space, env.action_space

    def as_row(o) -> torch.Tensor:   # gymnasium's observation -> the policy's input [1, obs_dim], as envs.GymVectorEnv does
        if isinstance(obs_space, gym.spaces.Discrete):
            return torch.eye(int(obs_space.n))[int(o) - int(obs_space.start)][None]
        return torch.as_tensor(np.asarray(o, dtype=np.float32)).reshape(1, -1)

    steps, total, done, success = 0, 0.0, False, None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        while not done:
            action = actor.act(as_row(obs))[0][0].numpy()
            action = (int(action) + int(act_space.start) if isinstance(act_space, gym.spaces.Discrete)
                      else action.reshape(act_space.shape))
            obs, reward, term, trunc, info = env.step(action)
            done, steps, total = term or trunc, steps + 1, total + float(reward)
            if steps % every == 0 or done:
                frames.append(env.render())
    env.close()
    # the verdict, judged on the last step as training judges it: the task's predicate, else the env's (envs.SUCCESS)
    row, term_t, trunc_t = as_row(obs), torch.tensor([bool(term)]), torch.tensor([bool(trunc)])
    if task is not None:
        success = bool(task.success(row, torch.tensor([float(reward)]), term_t, trunc_t, info)[0])
    elif predicate is not None:
        success = bool(predicate(row, term_t, trunc_t)[0])
    what = f"{args.task}'s rule" if judge_by else (args.task or args.env)
    verdict = {True: "success", False: "failure", None: f"return {total:.1f}"}[success]
    tail = f" after {steps} steps" + (f", return {total:.1f}" if success is not None and task is None else "")
    ending = f"{what}: {verdict}{tail}"
    colour = {True: (30, 140, 60), False: (190, 40, 40), None: (70, 70, 70)}[success]
    # every frame but the last: the step count; the last: how the episode ended (the verdict in capitals), held 2 s
    images = [captioned(f, f"{what}: step {min(i * every, steps)}", (70, 70, 70)) for i, f in enumerate(frames[:-1])]
    images.append(captioned(frames[-1], f"{what}: {verdict.upper() if success is not None else verdict}{tail}", colour))
    # a GIF holds 256 colours a frame: the fast octree finds them 5x faster than Pillow's default median
    # cut (which took 80% of a GIF's time), and rendered scenes of a few flat colours lose nothing to it
    images = [image.quantize(method=Image.Quantize.FASTOCTREE) for image in images]
    durations = [1000 * every // fps] * (len(images) - 1) + [2000]
    try:
        images[0].save(out, save_all=True, append_images=images[1:], duration=durations, loop=0,
                       comment=ending.encode())   # the verdict also in the file, for a program to read
    except (OSError, ValueError) as e:   # a full disk, a plugin missing for the format, ...
        raise ConfigError(f"cannot write {out}: {e}") from None
    return {"out": out, "steps": steps, "return": total, "success": success, "ending": ending}


# ================================================================================================
# The command line: one subcommand per stage, each with its own --help.
# ================================================================================================
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="The control benchmark's stages (expert, sft) and watching any policy "
                                            "(eval, gif, watch). `python control_tasks.py <command> --help` lists a "
                                            "command's options.")
    commands = p.add_subparsers(dest="stage", required=True, metavar="{expert,sft,eval,gif,watch}")
    tasks = ", ".join(TASKS)

    def add(name: str, help: str):
        return commands.add_parser(name, help=help, description=help)

    def seed(q, what: str, default: int):
        q.add_argument("--seed", type=int, default=default, help=f"{what}, 0 to 2**32 - 1 (default: {default})")

    q = add("expert", "stage 1: sppo.py's PPO on the task's shaped reward (a task with a classical controller "
                      "needs none); the run lives in runs/expert-<task>-<seed>/")
    q.add_argument("--task", default="", help=f"one of {tasks} (required)")
    q.add_argument("--out", default="", help="where the expert goes (default: checkpoints/<task>-expert.pt)")
    seed(q, "seed of the run", 1)
    q.add_argument("--total-steps", type=int, default=0, help="budget in env steps (default: the task's, envs.TASKS)")
    q = add("sft", "stage 2: behaviour cloning on the expert's successful episodes; stores its success rate "
                   f"(evaluate() at seed {EVAL_SEED}, the number `eval` repeats)")
    q.add_argument("--task", default="", help=f"one of {tasks} (required)")
    q.add_argument("--expert", default="", help="the expert checkpoint (default: checkpoints/<task>-expert.pt, or the "
                                                "task's classical controller)")
    q.add_argument("--out", default="", help="where the SFT policy goes (default: checkpoints/<task>-sft.pt)")
    seed(q, "seed of the demonstrations and of behaviour cloning", 0)
    q.add_argument("--episodes", type=int, default=500, help="episodes to measure the success rate on (default: 500)")
    for name, help in (("eval", "measure a policy on what it was trained on: the success rate of a task; mean ± std "
                                "of the return (and the success rate where the env has a success predicate) of a "
                                "gymnasium id. Seeded: the same command prints the same numbers"),
                       ("gif", "one episode of a policy as an animated GIF, captioned with its steps and how it ended"),
                       ("watch", "eval, then gif: the numbers and one episode of any run, in one command")):
        q = add(name, help)
        q.add_argument("path", nargs="?", default="", metavar="PATH",
                       help="a run folder of sppo.py (runs/<run>) or a checkpoint file (a model.pt, "
                            "checkpoints/<task>-sft.pt, ...)")
        q.add_argument("--checkpoint", default="", help="the same as PATH")
        q.add_argument("--task", default="", help="refuse the checkpoint unless it was trained on this task (default: "
                                                  "no check; the checkpoint's own env or task is always used)")
        q.add_argument("--judge-by", default="", metavar="TASK",
                       help="measure the policy under this task's rule (its horizon and success predicate) although it "
                            "was trained on another; allowed where the task's env is the policy's (default: off)")
        if name != "gif":
            q.add_argument("--episodes", type=int, default=500, help="episodes to measure on (default: 500)")
        seed(q, "seed of the initial states and of the sampled actions", EVAL_SEED)
        if name != "eval":
            q.add_argument("--out", default="", help="the GIF (default: beside the checkpoint: runs/<run>/episode.gif, "
                                                     "checkpoints/<name>.gif)")
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    # one thread, as sppo.py's default: a step of a small MLP and a batched env is a few tiny kernels, and
    # threads only add overhead to them (500 CartPole episodes: 0.5 s on one thread, 10 s on two busy cores)
    torch.set_num_threads(1)
    try:
        if a.stage in ("expert", "sft") and not a.task:
            raise ConfigError(f"{a.stage} needs --task (one of {', '.join(TASKS)})")
        if a.stage in ("eval", "gif", "watch"):
            if a.path and a.checkpoint and a.path != a.checkpoint:
                raise ConfigError(f"two checkpoints given ({a.path} and --checkpoint {a.checkpoint}); pass one")
            a.checkpoint = a.path or a.checkpoint
            if not a.checkpoint:
                raise ConfigError(f"{a.stage} needs a checkpoint: a run folder runs/<run>, its model.pt, or an "
                                  "expert or SFT checkpoint")
        if getattr(a, "episodes", 1) < 1:
            raise ConfigError(f"--episodes must be a positive integer, got {a.episodes}")
        if not 0 <= a.seed <= 2**32 - 1:   # sppo.py's rule
            raise ConfigError(f"--seed must be an integer from 0 to 2**32 - 1, got {a.seed}")
        if a.stage == "expert" and get_task(a.task).controller is not None:
            print(f"{a.task}'s expert is a classical controller ({get_task(a.task).controller.__name__}): "
                  f"nothing to train; run python control_tasks.py sft --task {a.task}")
        elif a.stage == "expert":
            out = a.out or os.path.join("checkpoints", f"{a.task}-expert.pt")
            info = expert(a.task, out, seed=a.seed, total_steps=a.total_steps)
            print(f"expert for {a.task}: success rate {info['success_rate']:.1%} over 200 episodes; saved {out}")
        elif a.stage == "sft":
            out = a.out or os.path.join("checkpoints", f"{a.task}-sft.pt")
            default = None if get_task(a.task).controller else os.path.join("checkpoints", f"{a.task}-expert.pt")
            info = sft(a.task, a.expert or default, out, seed=a.seed, eval_episodes=a.episodes)
            print(f"SFT policy for {a.task}: success rate {info['success_rate']:.1%} over {a.episodes} episodes "
                  f"({info['demos']} demonstrations, {info['bc_steps']} BC steps); saved {out}")
        else:
            out = gif_path(a.checkpoint, a.out) if a.stage != "eval" else ""   # a bad --out is refused first
            path = checkpoint_file(a.checkpoint)
            ckpt = read_checkpoint(path, ("args", "actor"))
            trained = sppo.saved_args(ckpt, path)
            if a.task and a.task != trained.task:   # never measure a policy by a rule it was not trained for, unasked
                same_env = get_task(a.task).env_id == trained.env
                raise ConfigError(refusal(path, trained, a.task) + ", or drop --task to measure it on "
                                  + (trained.task or trained.env)
                                  + (f"; --judge-by {a.task} measures it under {a.task}'s rule" if same_env else ""))
            actor, args = load_actor(path, judge_by=a.judge_by)   # refuses what cannot be measured, before anything runs
            if a.judge_by:
                print(f"NOTE: evaluating a {trained.task or trained.env} policy under {a.judge_by}'s rule "
                      f"(H = {horizon_of(args)}, its success predicate), not on what it was trained on")
            if a.stage != "gif":
                stored = None if a.judge_by else ckpt.get("sft") or ckpt.get("expert")
                print(report(path, args, evaluate(actor, args, a.episodes, seed=a.seed), stored,
                             judged_from=trained_on(trained) if a.judge_by else ""))
            if a.stage != "eval":
                shown = gif(path, out, seed=a.seed, judge_by=a.judge_by)
                print(f"wrote {shown['out']}: one episode (seed {a.seed}), {shown['ending']}")
        return 0
    except (ConfigError, envs.EnvError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
