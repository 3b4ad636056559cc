"""Sequence-Level PPO (Wang et al., arXiv:2604.08865) on gym control tasks -- and its relatives.

A whole episode is ONE action of a contextual bandit: the initial state s0 is the context (LLM: the
prompt), the episode is the action (LLM: the response), its outcome R is the reward (LLM: 1 if the
answer is correct), and a learned scalar V(s0) is the baseline. Every step of the episode gets the
same advantage A = R - V(s0), and the PPO clipped objective trains the policy from one episode per
context. Switching algorithm is switching the advantage estimator (and the ratio granularity); the
estimators and the clipped loss live in objective.py, which llm_demo.py imports too:

    --algo sppo       A_b = R_b - V(s0_b)                        one episode per context
    --algo ppo        GAE over a per-step critic V(s_t)          token-level PPO, one episode per context
    --algo grpo       A_b = (R_b - mean_group) / std_group       G episodes from the same s0
    --algo rloo       A_b = R_b - mean of the other G-1          G episodes from the same s0
    --algo reinforce  A_b = R_b                                  no baseline at all

Usage:
    python sppo.py --env CartPole-v1                              # Sequence-Level PPO, default settings
    python sppo.py --env CartPole-v1 --algo ppo                   # token-level PPO + GAE, same code path
    python sppo.py --env CartPole-v1 --algo grpo --group-size 8
    python sppo.py --task mountaincar --init checkpoints/mountaincar-sft.pt
                                                                  # the paper's benchmark: 0/1 outcome, from SFT
                                                                  # (the task sets --lr 1e-4 --no-norm-adv --ratio token)
    python sppo.py --env CartPole-v1 --total-steps 20000          # a tiny run, for class
    python sppo.py --task mountaincar --init checkpoints/mountaincar-sft.pt --compile   # compiled rollout (native envs)
    python sppo.py --resume runs/<run_name>/model.pt              # continue an interrupted run
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

import envs
from objective import (ESTIMATORS, Baselines, estimate, explained_variance, masked_mean, outcome_at_end, per_step, policy_loss,
                       standardize)
from runlog import (ConfigError, ProgressDisplay, ProgressLog, StopOnCtrlC, check_finite, check_settings, command_line,
                    keep_rows_up_to, opt, parse_args, pick_device, plot_progress, random_state, read_checkpoint, restore,
                    resumed_settings, run_folder, save_checkpoint, diverged_status, stopped_status, write_settings, plural)
from runlog import as_flag, checkpoint_file, typed   # --task's settings: which flags the user typed, and how to name them
from value import PromptValue, StepValue, mlp


# ================================================================================================
# Settings: one dataclass; the command line is generated from it, so docs and defaults agree.
# ================================================================================================
@dataclass
class Args:
    env: str = opt("CartPole-v1", "gymnasium id of the environment")
    task: str = opt("", "a control-benchmark task (envs.TASKS): precision-cartpole | mountaincar | pendulum | "
                        "lunarlander | hopper; sets --env, the horizon, the 0/1 outcome, the paper's episodes per update "
                        "and the RL stage's --lr 1e-4 --no-norm-adv --ratio token (a flag you type wins)")
    init: str = opt("", "start the actor from this checkpoint (an SFT policy of the task, or a model.pt); the critic starts fresh")
    algo: str = opt("sppo", "advantage estimator: sppo | ppo | grpo | rloo | reinforce", choices=ESTIMATORS)
    ratio: str = opt("seq", "importance-ratio granularity: token | seq (geometric mean) | joint", choices=("token", "seq", "joint"))
    reward: str = opt("return", "episode outcome R: return (sum of rewards) | success (binary, judged at the end) | "
                                "shaped (--task only: the expert stage's dense reward); a --task's return IS its 0/1 outcome",
                      choices=("return", "success", "shaped"))
    num_episodes: int = opt(0, "episodes per update B (LLM: responses per batch); 0: 32, or the paper's value for a --task")
    group_size: int = opt(8, "G: episodes sharing one initial state (grpo and rloo only)")
    total_steps: int = opt(1_000_000, "budget in env steps (real steps; padding after an episode ends is not counted)")
    total_episodes: int = opt(0, "budget in episodes (0: none); the run stops at whichever budget it reaches first")
    horizon: int = opt(0, "episode length limit H (0: the env's own time limit)")
    lr: float = opt(3e-3, "actor learning rate (Adam)")
    critic_lr: float = opt(3e-3, "critic learning rate (Adam)")
    epochs: int = opt(8, "passes over each batch")
    minibatches: int = opt(4, "minibatches per pass; each holds whole episodes")
    clip_eps: float = opt(0.2, "PPO clip range epsilon")
    dual_clip: float = opt(3.0, "dual-clip c for negative advantages (0: off)")
    gamma: float = opt(1.0, "discount for GAE (ppo); the sequence-level outcome is undiscounted")
    gae_lambda: float = opt(0.95, "GAE lambda (ppo)")
    ent_coef: float = opt(0.0, "entropy bonus coefficient")
    critic_warmup: int = opt(0, "first N updates train only the critic (a fresh critic beside a pre-trained actor)")
    norm_adv: bool = opt(True, "standardise advantages over the batch's real steps")
    max_grad_norm: float = opt(0.5, "gradient clipping (0: off)")
    hidden: int = opt(64, "hidden units of the actor and critic MLPs")
    stop_when_solved: bool = opt(True, "stop once the last-20-episode mean return reaches the env's threshold")
    backend: str = opt("auto", "environments: auto | torch (native) | gymnasium", choices=("auto", "torch", "gymnasium"))
    device: str = opt("cpu", "cpu | cuda | auto")
    seed: int = opt(1, "random seed")
    threads: int = opt(1, "torch CPU threads (small MLPs run fastest on one)")
    compile: bool = opt(False, "run the rollout's steps as torch.compile'd chunks (native envs only): ~10x faster steps "
                               "after a compilation of up to a minute; same actions, observations equal to float rounding")
    save_every: int = opt(10, "checkpoint every N updates (also at the end and on Ctrl-C)")
    tensorboard: bool = opt(False, "also write progress.csv's numbers as TensorBoard event files in the run's folder "
                                   "(tensorboard --logdir runs); needs the optional package: pip install tensorboard")
    run_name: str = opt("", "folder under runs/ (default: <task or env>__<algo>__<seed>__<unix time>)")
    resume: str = opt("", "checkpoint to continue from, its folder's model.pt (its saved settings are used; the budgets, "
                          "--device, --stop-when-solved, --threads, --compile, --save-every and --tensorboard may change)")


# ================================================================================================
# The policy: categorical for Discrete actions, Gaussian (state-independent std) for Box actions.
# ================================================================================================
class Actor(nn.Module):
    """pi(a | s): categorical over logits for Discrete actions, Gaussian with a state-independent std
    for Box actions. The log-probs are written out instead of built with torch.distributions: one
    Categorical object per environment step costs ~100 us, more than the network itself."""

    def __init__(self, obs_dim: int, action_space, hidden: int = 64):
        super().__init__()
        self.discrete = hasattr(action_space, "n")
        act_dim = action_space.n if self.discrete else int(np.prod(action_space.shape))
        self.net = mlp(obs_dim, act_dim, hidden, out_gain=0.01)   # small last layer: near-uniform start
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(act_dim))

    def _log_prob(self, out: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.discrete:   # out: logits [..., n], actions [...] (long)
            return out.log_softmax(-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        z = (actions - out) / self.log_std.exp()   # out: mean [..., d], actions [..., d]
        return (-0.5 * z ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor):
        """obs [B, obs_dim] -> (action [B] or [B, act_dim], logp [B]). The env clips Box actions; the
        log-prob is of the unclipped sample, the one the policy actually drew."""
        out = self.net(obs)
        if self.discrete:   # Gumbel-max: argmax(logits + Gumbel noise) is a sample of softmax(logits)
            action = (out - torch.empty_like(out).exponential_().log()).argmax(-1)
        else:
            action = out + self.log_std.exp() * torch.randn_like(out)
        return action, self._log_prob(out, action)

    def logp_entropy(self, obs: torch.Tensor, actions: torch.Tensor):
        """obs [T, B, obs_dim], actions [T, B(, act_dim)] -> (logp [T, B], entropy [T, B])."""
        out = self.net(obs)
        if self.discrete:
            logp_all = out.log_softmax(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        else:
            entropy = (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum().expand(out.shape[:-1])
        return self._log_prob(out, actions), entropy


# ================================================================================================
# Settings checks. (Plumbing: nothing here changes the algorithm; run folders live in runlog.py.)
# ================================================================================================
def check_args(args: Args) -> None:
    """Refuse impossible settings before anything is built, with what to do instead."""
    check_settings(args, {"algo": tuple(ESTIMATORS), "ratio": ("token", "seq", "joint"),
                          "reward": ("return", "success", "shaped"), "backend": ("auto", "torch", "gymnasium")},
                   positive_ints=("num_episodes", "total_steps", "epochs", "minibatches", "hidden", "save_every", "threads"),
                   positive_floats=("lr", "critic_lr", "clip_eps"))
    if args.total_episodes < 0:
        raise ConfigError(f"--total-episodes must be >= 0 (0: no episode budget), got {args.total_episodes}")
    # one rule for every env and backend: the range all the generators here accept, with room for the
    # per-update seeds derived from it (seed * 1_000_003 + update)
    if not 0 <= args.seed <= 2**32 - 1:
        raise ConfigError(f"--seed must be an integer from 0 to 2**32 - 1, got {args.seed}")
    if args.reward == "shaped" and not args.task:
        raise ConfigError("--reward shaped is the expert stage of a --task; pass --task (one of "
                          f"{', '.join(envs.TASKS)}) or use --reward return")
    if args.horizon < 0:
        raise ConfigError(f"--horizon must be >= 0 (0: the env's own limit), got {args.horizon}")
    if not (args.dual_clip == 0 or args.dual_clip > 1):
        raise ConfigError(f"--dual-clip must be 0 (off) or > 1, got {args.dual_clip}")
    if not (0 < args.gamma <= 1 and 0 <= args.gae_lambda <= 1):
        raise ConfigError(f"need 0 < --gamma <= 1 and 0 <= --gae-lambda <= 1, got {args.gamma} and {args.gae_lambda}")
    if args.ent_coef < 0 or args.max_grad_norm < 0 or args.critic_warmup < 0:
        raise ConfigError("--ent-coef, --max-grad-norm and --critic-warmup must be >= 0")
    if args.minibatches > args.num_episodes:
        raise ConfigError(f"--minibatches ({args.minibatches}) cannot exceed --num-episodes ({args.num_episodes})")
    if ESTIMATORS[args.algo].grouped:
        if args.group_size < 2:
            raise ConfigError(f"--algo {args.algo} compares episodes within a group: --group-size must be >= 2, got {args.group_size}")
        if args.num_episodes % args.group_size:
            raise ConfigError(f"--num-episodes ({args.num_episodes}) must be a multiple of --group-size ({args.group_size})")
    if args.compile and (args.backend == "gymnasium" or args.env not in envs.NATIVE_ENVS):
        raise ConfigError(f"--compile needs a native torch env (have: {', '.join(envs.NATIVE_ENVS)}), not {args.env}")
    if args.reward == "success" and not args.task and args.env.rpartition(":")[2] not in envs.SUCCESS:
        raise ConfigError(f"'{args.env}' has no success predicate (have: {', '.join(envs.SUCCESS)}); use --reward return")


# ================================================================================================
# Training: rollout -> outcome -> advantage (with the pre-update critic) -> clipped updates.
# ================================================================================================
COLUMNS = ["update", "episodes", "env_steps", "wall_time", "mean_return", "success_rate", "policy_loss",
           "value_loss", "entropy", "approx_kl", "clip_frac", "adv_std", "explained_var", "last20_return", "steps_per_s"]


def compute_advantages(args: Args, batch: envs.Episodes, outcome: torch.Tensor, critic):
    """Read what the algorithm's estimator needs (objective.ESTIMATORS) off the batch and the critic,
    then estimate. Returns (advantages [T, B] or [B], the critic's targets: R for V(s0), GAE's returns
    for V(s_t), None without a critic)."""
    needs = ESTIMATORS[args.algo]
    baselines = Baselines(group_size=args.group_size)
    if needs.critic == "prompt":
        baselines.prompt_value = critic(batch.s0)                    # V(s0) [B], regresses on R
    elif needs.critic == "step":
        mask = batch.step_mask
        if args.reward != "success":   # dense rewards (a return, or a task's shaped reward)
            rewards = batch.rewards * mask
            # bootstrap episodes cut by a time limit; a terminated one has no future
            last_value = critic(batch.final_obs) * (~batch.terminated).float()
        else:  # the binary outcome arrives at the last real step; the episode's end is the true end
            rewards, last_value = outcome_at_end(outcome, mask), torch.zeros_like(outcome)
        baselines = Baselines(rewards=rewards, step_values=critic(batch.obs) * mask, step_mask=mask,
                              last_value=last_value, gamma=args.gamma, lam=args.gae_lambda)
    adv = estimate(args.algo, outcome, baselines)
    if needs.critic == "prompt":
        return adv, outcome
    if needs.critic == "step":   # GAE's returns A_t + V(s_t), zero on padding
        return adv, (adv + baselines.step_values) * baselines.step_mask
    return adv, None


def update(args, env, actor, critic, optimizer, seed: int, train_actor: bool = True) -> tuple[envs.Episodes, dict]:
    """One update: B whole episodes, then `epochs` passes of `minibatches` clipped steps. With
    train_actor False (--critic-warmup) only the critic learns from them."""
    needs = ESTIMATORS[args.algo]                                    # which critic, whether grouped
    group = args.group_size if needs.grouped else 1
    batch = envs.rollout(env, actor.act, horizon=args.horizon or None, group_size=group, seed=seed, compile=args.compile)
    outcome = batch.success.float() if args.reward == "success" else batch.returns
    mask = batch.step_mask                                           # [T, B] (LLM: response mask)
    with torch.no_grad():
        advantages, critic_target = compute_advantages(args, batch, outcome, critic)
        step_adv = per_step(advantages, mask)                                            # [T, B]
        adv_std = float(step_adv[mask > 0].std()) if mask.sum() > 1 else 0.0
        if args.norm_adv:
            step_adv = standardize(step_adv, mask)
        # how well the critic predicted its targets, read off the advantages: V(s0) = R - A, V(s_t) = G_t - A_t
        if needs.critic == "prompt":
            ev = explained_variance(outcome - advantages, outcome)
        elif needs.critic == "step":
            ev = explained_variance((critic_target - advantages)[mask > 0], critic_target[mask > 0])
        else:
            ev = float("nan")
        if critic is not None and args.reward != "success":
            critic.scaler.update(critic_target if needs.critic == "prompt" else critic_target[mask > 0])

    B = mask.shape[1]
    sums = {k: 0.0 for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")}
    n = 0
    for _ in range(args.epochs):
        for idx in torch.randperm(B, device=mask.device).tensor_split(args.minibatches):
            # the networks see real steps only (padding costs no compute); results go back to [T_mb, b]
            T_mb = int(batch.lengths[idx].max())
            m, obs = mask[:T_mb, idx], batch.obs[:T_mb, idx]
            real = m.bool()
            logp, entropy = (torch.zeros_like(m).masked_scatter(real, x)
                             for x in actor.logp_entropy(obs[real], batch.actions[:T_mb, idx][real]))
            pg_loss, stats = policy_loss(logp, batch.logp[:T_mb, idx], step_adv[:T_mb, idx], m,
                                         args.ratio, args.clip_eps, args.dual_clip)
            ent = masked_mean(entropy, m)
            loss = pg_loss - args.ent_coef * ent
            if needs.critic == "prompt":
                value_loss = critic.loss(batch.s0[idx], critic_target[idx]).mean()
            elif needs.critic == "step":
                value_loss = critic.loss(obs[real], critic_target[:T_mb, idx][real]).mean()
            else:
                value_loss = torch.zeros(())
            # a non-finite number stops the run before it reaches the weights (FloatingPointError; train()
            # reports it): the losses before backward, the gradient norms before the step, the weights after it
            check_finite({"the policy loss": pg_loss, "the value loss": value_loss, "the entropy": ent})
            optimizer.zero_grad()
            total = (loss if train_actor else 0) + value_loss   # separate networks: no coefficient needed
            if total.requires_grad:                              # (grpo during a warm-up: nothing to learn)
                total.backward()
            for name, net in (("actor", actor), ("critic", critic)):
                if net is not None:   # clip_grad_norm_ returns the norm before clipping; without clipping, measure it
                    norm = (nn.utils.clip_grad_norm_(net.parameters(), args.max_grad_norm) if args.max_grad_norm > 0 else
                            nn.utils.get_total_norm([p.grad for p in net.parameters() if p.grad is not None]))
                    check_finite({f"the {name}'s gradient norm": norm})
            optimizer.step()
            check_finite({f"a weight of the {name} after the optimizer step": net.parameters()
                          for name, net in (("actor", actor), ("critic", critic)) if net is not None})
            for k, v in (("policy_loss", pg_loss), ("value_loss", value_loss), ("entropy", ent), *stats.items()):
                sums[k] += float(v.detach())
            n += 1
    row = {k: v / n for k, v in sums.items()}
    row.update(mean_return=float(batch.returns.mean()), adv_std=adv_std, explained_var=ev,
               success_rate="" if batch.success is None else float(batch.success.float().mean()))
    return batch, row


def build(args: Args, device: torch.device):
    """The batched env (B = num_episodes copies), the actor, the critic the algorithm needs (V(s0) for
    sppo, V(s_t) for ppo, none for the group and baseline-free estimators) and one Adam over both."""
    if args.task:   # the env behind the task's reward: the 0/1 outcome, or the expert's shaped reward
        env = envs.make_task(args.task, args.num_episodes, device=str(device), seed=args.seed, backend=args.backend,
                                 reward="shaped" if args.reward == "shaped" else "outcome", horizon=args.horizon)
    else:
        env = envs.make_env(args.env, args.num_episodes, device=str(device), seed=args.seed, backend=args.backend,
                            max_episode_steps=args.horizon or None)
    obs_dim = env.single_observation_space.shape[0]   # make_env refused every space the Actor cannot read
    actor = Actor(obs_dim, env.single_action_space, args.hidden).to(device)
    critic = {"prompt": lambda: PromptValue(obs_dim, args.hidden, target="success" if args.reward == "success" else "return"),
              "step": lambda: StepValue(obs_dim, args.hidden)}.get(ESTIMATORS[args.algo].critic, lambda: None)()
    groups = [{"params": actor.parameters(), "lr": args.lr}]
    if critic is not None:
        critic.to(device)
        groups.append({"params": critic.parameters(), "lr": args.critic_lr})
    return env, actor, critic, torch.optim.Adam(groups, eps=1e-5)


def saved_args(ckpt: dict, path: str) -> Args:
    """The settings a checkpoint was trained with (for --resume, and for loading its actor elsewhere)."""
    try:
        return Args(**ckpt["args"])
    except TypeError:
        unknown = sorted(set(ckpt["args"]) - {f.name for f in dataclasses.fields(Args)}) if isinstance(ckpt["args"], dict) else []
        raise ConfigError(f"checkpoint {path} holds settings sppo.py does not know ({', '.join(unknown) or 'not a mapping'}); "
                          "it was written by another program or another version of sppo.py") from None


def apply_task(args: Args) -> Args:
    """Fill in what a --task decides: its env, horizon, 0/1 outcome and the paper's episodes per update. (Its
    RL-stage settings depend on what the user typed, so train() applies them first: task_settings.)"""
    if not args.task:
        return dataclasses.replace(args, num_episodes=args.num_episodes or 32)
    task = envs.get_task(args.task)
    return dataclasses.replace(args, env=task.env_id, horizon=args.horizon or task.horizon,
                               num_episodes=args.num_episodes or task.episodes,
                               reward="shaped" if args.reward == "shaped" else "success")


def task_settings(args: Args) -> tuple[Args, list[str]]:
    """The RL stage's settings a --task carries (envs.Task.rl: --lr 1e-4 --no-norm-adv --ratio token), applied to
    every one of them the user did not type (runlog.typed: the flags typed on the command line, or, for Args
    built in Python, the fields that differ from their defaults). Returns (the settings, the flags applied, e.g.
    ["--lr 0.0001", "--no-norm-adv"]; [] when none was).

    Only for the RL stage: a run without --task, and the expert stage (--reward shaped, whose settings
    control_tasks.py passes), keep sppo.py's defaults. A resumed run never comes here: it keeps its
    checkpoint's settings, whatever the task carries today (train)."""
    if not args.task or args.reward == "shaped":
        return args, []
    wanted = {name: value for name, value in envs.get_task(args.task).rl.items() if name not in typed(args)}
    applied = [as_flag(name, value) for name, value in wanted.items() if getattr(args, name) != value]
    return dataclasses.replace(args, **wanted), applied


def init_actor(args: Args, actor: Actor) -> None:
    """--init: the actor's weights from a checkpoint of the same task (an SFT policy); the critic starts fresh."""
    init = read_checkpoint(args.init, ("args", "actor"))
    trained = init["args"]
    if trained.get("task", "") != args.task or (not args.task and trained.get("env") != args.env):
        on = f"task '{trained['task']}'" if trained.get("task") else f"env '{trained.get('env')}'"
        raise ConfigError(f"--init {args.init} was trained on {on}, not '{args.task or args.env}'; pass a checkpoint "
                          f"of this run's {'task' if args.task else 'env'}")
    try:
        actor.load_state_dict(init["actor"])
    except RuntimeError:   # same env: the sizes differ only where the settings do
        if trained.get("hidden") != args.hidden:
            raise ConfigError(f"--init {args.init} holds a policy of another size; it was trained with "
                              f"--hidden {trained.get('hidden')}, this run has --hidden {args.hidden}") from None
        raise ConfigError(f"--init {args.init} holds a policy whose observation or action sizes are not those of "
                          f"{args.env}; it is damaged or was written by another version of this project") from None


# --resume continues the saved settings; a typed flag may change only how far the run goes, where it runs and
# when it stops or saves (the same run, further). Any other typed flag that differs is refused (runlog.resumed_settings).
CHANGE_ON_RESUME = ("total_steps", "total_episodes", "stop_when_solved", "device", "threads", "compile", "save_every",
                    "tensorboard")


def train(args: Args) -> int:
    command = command_line("sppo.py", args)   # as typed, before a --resume or a --task fills the settings in (settings.json)
    args.resume, args.init = checkpoint_file(args.resume), checkpoint_file(args.init)   # runs/<run> means its model.pt
    ckpt = read_checkpoint(args.resume, ("args", "actor", "critic", "optimizer", "progress", "rng")) if args.resume else None
    if ckpt is not None:
        args = resumed_settings(saved_args(ckpt, args.resume), args, CHANGE_ON_RESUME, os.path.dirname(args.resume) or ".")
    else:   # a new run of a --task: the RL stage's settings, where no flag was typed (a resume keeps its own)
        if args.task and "env" in typed(args) and args.env != envs.get_task(args.task).env_id:   # a typed flag never loses silently
            raise ConfigError(f"--task {args.task} runs on {envs.get_task(args.task).env_id}, not --env {args.env}; "
                              "drop one of them")
        args, applied = task_settings(args)
        if applied:
            print(f"--task {args.task}: the RL stage's settings {' '.join(applied)} (a flag you type wins; "
                  "README, \"The control benchmark\")")
    args = apply_task(args)
    check_args(args)
    device = pick_device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run_dir = run_folder(args.resume, args.run_name or f"{args.task or args.env}__{args.algo}__{args.seed}__{int(time.time())}",
                         ckpt)

    env, actor, critic, optimizer = build(args, device)
    if args.init and ckpt is None:
        init_actor(args, actor)
    progress = {"update": 0, "episodes": 0, "env_steps": 0, "wall_time": 0.0, "recent_returns": []}
    if ckpt is not None:
        progress = restore(ckpt, args.resume, device, optimizer, {"actor": actor, "critic": critic}, progress)
    os.makedirs(run_dir, exist_ok=True)
    ckpt_path, csv_path = os.path.join(run_dir, "model.pt"), os.path.join(run_dir, "progress.csv")

    def save():
        save_checkpoint(ckpt_path, args=dataclasses.asdict(args), actor=actor.state_dict(),
                        critic=None if critic is None else critic.state_dict(), optimizer=optimizer.state_dict(),
                        progress=progress, **random_state(device))

    if ckpt is not None and not os.path.isfile(ckpt_path):   # a resumed copy, where run_folder found no model.pt:
        save()                                                 # from now on the folder's model.pt is the run's checkpoint
    if ckpt is not None:   # rows written after the checkpoint are replayed
        dropped = keep_rows_up_to(csv_path, progress["update"], COLUMNS)
        if dropped:
            print(f"note: dropped {dropped} row(s) of {csv_path} after update {progress['update']}, the checkpoint's: "
                  "written after it, they are replayed", file=sys.stderr)

    # a --task's return IS its 0/1 outcome (--reward shaped aside): mean return and success rate are then one
    # number, reported once, as a success rate (the progress line, the curve, the summary)
    zero_one = bool(args.task) and args.reward == "success"
    threshold = envs.spec(args.env).reward_threshold if args.stop_when_solved and not args.task else None
    recent = deque(progress["recent_returns"], maxlen=20)   # the last 20 finished episodes
    status, start = "budget reached", time.perf_counter() - progress["wall_time"]
    # a solved run resumed under the stopping rule has nothing to do: not one more update
    solved = threshold is not None and len(recent) == 20 and np.mean(recent) >= threshold
    if solved:
        status = (f"solved already (last-20 mean return {np.mean(recent):.1f} >= {threshold:g}; "
                  "--no-stop-when-solved trains on)")

    def budget_left() -> bool:
        return progress["env_steps"] < args.total_steps and (args.total_episodes == 0 or
                                                              progress["episodes"] < args.total_episodes)

    # a resume with nothing to do leaves the folder as it was: no checkpoint, no settings rewritten
    idle = ckpt is not None and (solved or not budget_left())
    if idle and not solved:
        status = "budget reached already (raise --total-steps or --total-episodes to train on)"
    if not idle:
        write_settings(run_dir, command, args, {"update": progress["update"]}, resumed=ckpt is not None)
    stop = StopOnCtrlC()
    by_episodes = args.total_episodes > 0   # the progress counts the budget the user set (an episode budget, if any)
    with stop, ProgressLog(csv_path, COLUMNS, "update", tensorboard=args.tensorboard) as log, \
            ProgressDisplay(*((args.total_episodes, progress["episodes"], "episode") if by_episodes else
                              (args.total_steps, progress["env_steps"], "env step"))) as bar:
        try:
            while not solved and budget_left():   # (never entered when idle)
                # every update's initial states come from its own seed, so --resume replays the same run
                batch, row = update(args, env, actor, critic, optimizer, seed=args.seed * 1_000_003 + progress["update"],
                                    train_actor=progress["update"] >= args.critic_warmup)
                steps = int(batch.step_mask.sum())
                recent.extend(batch.returns.tolist())
                last20 = float(np.mean(recent))
                progress.update(update=progress["update"] + 1, episodes=progress["episodes"] + batch.step_mask.shape[1],
                                env_steps=progress["env_steps"] + steps, wall_time=time.perf_counter() - start,
                                recent_returns=list(recent))
                row.update({k: progress[k] for k in ("update", "episodes", "env_steps", "wall_time")},
                           last20_return=last20, steps_per_s=progress["env_steps"] / progress["wall_time"])
                log.writerow(row)
                log.flush()
                bar.update(batch.step_mask.shape[1] if by_episodes else steps)
                if zero_one:
                    bar.set_postfix(update=progress["update"], success=f"{row['success_rate']:.0%}", last20=f"{last20:.0%}")
                else:
                    bar.set_postfix(update=progress["update"], ret=f"{row['mean_return']:.1f}", last20=f"{last20:.1f}")
                if progress["update"] % args.save_every == 0:
                    save()
                if threshold is not None and len(recent) == 20 and last20 >= threshold:
                    status = f"solved (last-20 mean return {last20:.1f} >= {threshold:g})"
                    break
                if stop.requested:
                    status = "interrupted (Ctrl-C)"
                    break
            if not idle:
                save()   # between updates: the checkpoint always matches the last row of progress.csv
        except FloatingPointError as e:   # a non-finite number (update() checks): the weights may be half-way
            status = f"diverged: update {progress['update'] + 1}: {e}"   # through this update, so nothing more is saved
        except KeyboardInterrupt:   # a second Ctrl-C: stop now, mid-update, and keep the last checkpoint
            status = stopped_status(ckpt_path, run_dir)
        # the bar ends where the run did, saying why: not frozen at 4% of a budget that a solved run never uses
        ended = status.split(" (")[0].split(":")[0]   # solved, budget reached, interrupted, diverged, stopped
        bar.end(f"{ended} in update {progress['update'] + 1}" if status.startswith(("diverged", "stopped")) else
                f"{ended} at update {progress['update']}")
    if status.startswith("diverged"):
        print("error: " + diverged_status(status[len("diverged: "):], ckpt_path, csv_path, COLUMNS, "update",
                                          None if args.max_grad_norm > 0 else Args.max_grad_norm), file=sys.stderr)
    title, png = f"{args.algo} on {args.task or args.env}", os.path.join(run_dir, "learning_curve.png")
    if zero_one:
        plot_progress(csv_path, png, title, x="env_steps", xlabel="env steps", unit_range=True, ylabel="success rate",
                      curves=[("success_rate", "success rate (the update's episodes)")])
    else:   # the solve line is gymnasium's reward_threshold (CartPole-v1: 475), which the last-20 mean is held to
        solve_at = None if args.task else envs.spec(args.env).reward_threshold
        plot_progress(csv_path, png, title, x="env_steps", xlabel="env steps", ylabel="episode return",
                      curves=[("mean_return", "mean return (the update's episodes)"),
                              ("last20_return", "mean return of the last 20 episodes")],
                      twin=("success_rate", "success rate"),
                      threshold=None if solve_at is None else (solve_at, f"solved: last-20 mean >= {solve_at:g}"))
    if status.startswith("diverged"):
        return 3
    last20 = np.mean(recent) if recent else float("nan")
    if os.path.isfile(ckpt_path):   # what to do next with it (before the summary, which stays the last line)
        print(f"watch it: python control_tasks.py watch {run_dir}   (its score, and one episode as a GIF)")
    print(f"{args.algo} on {args.env}: {status} after {plural(progress['update'], 'update')}, "
          f"{plural(progress['episodes'], 'episode')}, {plural(progress['env_steps'], 'env step')}, {progress['wall_time']:.1f} s; "
          + (f"last-20 success rate {last20:.0%}" if zero_one else f"last-20 mean return {last20:.1f}") + f"; saved {run_dir}")
    return 130 if status.startswith(("interrupted", "stopped")) else 0


def main(argv=None) -> int:
    try:
        return train(parse_args(argv, Args, __doc__.split("\n")[0]))
    except (ConfigError, envs.EnvError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
