"""Probe environments: tiny contextual bandits whose right answer is known, one per mechanism of
Sequence-Level PPO (after the probe environments ARENA's RL course debugs with). A bug shows up in
seconds, as a number that misses its pass mark, instead of in a failed 20-minute run.

Every probe runs THIS project's code: the episodes come from envs.rollout, the advantages from
sppo.compute_advantages (objective.ESTIMATORS), the critics are value.py's, and the training steps are
sppo.update's. Only the environment is new: `ProbeEnv`, B copies of an episode whose context s0 is one of
C one-hot contexts, two actions per step, and a 0/1 outcome R paid on the last step with a probability
that depends on the context and on the FIRST action only (win[c, a0]).

    probe                       ProbeEnv                                   pass mark (the right answer)
    (a) constant_outcome        R = 1 always, lengths 1, 3, 5, 7           V(s0) = 1 and A = 0
    (b) context_outcome         P(R) = 0.1 / 0.4 / 0.6 / 0.9 by context    V(s0) = E[R | s0]; the policy stays put
    (c) action_outcome          P(R) = 0.9 for the context's action, 0.1   A credits the right action (0.8);
                                for the other                              the policy learns it
    (d) delayed_credit          R = [a0 = 1], paid k steps later           SPPO's credit to a0 is 1 for every k;
                                                                           GAE's (lambda < 1) fades as lambda^k
    (e) difficulty              easy / medium / hard contexts, G samples   SPPO: credit in outcome units, 1 sample;
                                                                           GRPO: rescaled by 1/std, flat groups

Each probe function returns a dict of the numbers it measured and `passed` (the pass mark, in its
docstring); each takes `seed` and runs in about a second on one CPU core (delayed_credit: ~3 s).
tests/test_probes.py runs them and plants known bugs (a mask that lets the next episode in, a critic that
reads the action, a sign flip, a baseline not detached, ...) that each probe must catch. From a notebook
(after `os.chdir(ROOT); sys.path.insert(0, str(ROOT))`, as the course notebooks begin):

    sys.path.insert(0, str(ROOT / "tests")); import probes
    probes.delayed_credit()   # {'k': [1, 4, 16, 64], 'sppo_credit': [1.0, 1.0, 1.0, 1.0],
                              #  'gae_credit': [0.95, 0.815, 0.44, 0.038], 'lambda_k': [...], 'passed': True}

The end of the file holds the checkers of notebooks/04_probes_and_exercises.ipynb's exercises (check_*), which
measure a student's answer the same way: numbers, and `passed`.
"""
from __future__ import annotations

import contextlib
import dataclasses

import gymnasium as gym
import torch
import torch.nn.functional as F

import envs
import objective
import sppo
from objective import per_step
from value import PromptValue, StepValue


# ================================================================================================
# The probe environment: a contextual bandit laid out as episodes, behind the trainer's env interface
# ================================================================================================
class ProbeEnv:
    """B copies of a probe episode, with the interface envs.rollout and sppo.update read (reset, step,
    max_episode_steps, the spaces). An episode: a context c (one of C) drawn at reset, `lengths[c]` steps
    of two actions each, and a 0/1 outcome R, paid as the reward of the last step, that is 1 with
    probability win[c, a0] -- a0 is the episode's first action; later actions change nothing.

    observation [B, C + 2] = one-hot(c), t / H (H = the longest length), the first action seen so far
    (0 before it is taken, -1 for action 0, +1 for action 1). So s0 tells the context and nothing else,
    while every later observation also shows a0 -- as an LLM's prefix shows its first token (with
    show_first_action=False it stays 0: no observation tells a0, so no critic can tell either).
    info["success"] [B] is R on the step an episode ends (how envs.rollout reads a task's success).
    The step after an episode ends starts the next one (gymnasium's NEXT_STEP autoreset): reward 0, the
    new s0. Those steps are padding for the rollout; a mask bug lets them leak in.
    """

    def __init__(self, num_envs: int, win, lengths=(1,), show_first_action: bool = True, seed: int = 0):
        self.show_first_action = show_first_action
        self.win = torch.as_tensor(win, dtype=torch.float32)                   # [C, 2] P(R = 1 | c, a0)
        self.lengths = torch.as_tensor(lengths).long().expand(len(self.win))   # [C]
        self.num_envs, self.n_contexts = num_envs, len(self.win)
        self.max_episode_steps = int(self.lengths.max())
        self.env_id, self.device = "probe", torch.device("cpu")
        self.single_observation_space = gym.spaces.Box(-1.0, 1.0, (self.n_contexts + 2,))
        self.single_action_space = gym.spaces.Discrete(2)
        self.generator = torch.Generator().manual_seed(seed)

    def copies(self, num_envs: int) -> "ProbeEnv":
        """The same probe with another number of copies (a large batch to score on)."""
        return ProbeEnv(num_envs, self.win, self.lengths, self.show_first_action, seed=self.generator.initial_seed())

    def observe(self, context: torch.Tensor, t: torch.Tensor, a0: torch.Tensor) -> torch.Tensor:
        """context, t, a0 [B] (a0 = -1: not taken yet) -> observation [B, C + 2]."""
        seen = torch.where((a0 < 0) | (not self.show_first_action), 0.0, 2.0 * a0 - 1.0)
        return torch.cat([torch.nn.functional.one_hot(context, self.n_contexts).float(),
                          (t.float() / self.max_episode_steps)[:, None], seen[:, None]], 1)

    def s0(self) -> torch.Tensor:
        """The C initial observations, one per context, in context order -> [C, C + 2]."""
        c = torch.arange(self.n_contexts)
        return self.observe(c, torch.zeros_like(c), torch.full_like(c, -1))

    def reset(self, seed: int | None = None, group_size: int = 1) -> torch.Tensor:
        if seed is not None:
            self.generator.manual_seed(seed)
        # one context per group of G consecutive copies (GRPO's G samples of one prompt)
        self.context = torch.randint(self.n_contexts, (self.num_envs // group_size,),
                                     generator=self.generator).repeat_interleave(group_size)
        self.t = torch.zeros(self.num_envs, dtype=torch.long)
        self.a0 = torch.full((self.num_envs,), -1)
        self.ended = torch.zeros(self.num_envs, dtype=torch.bool)
        return self.observe(self.context, self.t, self.a0)

    def step(self, actions: torch.Tensor):
        restart = self.ended                                        # ended on the previous step: autoreset
        self.a0 = torch.where((self.t == 0) & ~restart, actions.long(), self.a0)
        self.t = self.t + 1
        ended = ~restart & (self.t >= self.lengths[self.context])
        p = self.win[self.context, self.a0.clamp(min=0)]
        success = ended & (torch.rand(self.num_envs, generator=self.generator) < p)
        fresh = torch.randint(self.n_contexts, (self.num_envs,), generator=self.generator)
        self.context = torch.where(restart, fresh, self.context)
        self.t = torch.where(restart, 0, self.t)
        self.a0 = torch.where(restart, -1, self.a0)
        self.ended = ended
        return (self.observe(self.context, self.t, self.a0), success.float(), ended,
                torch.zeros_like(ended), {"success": success})

    def close(self):
        pass


# ================================================================================================
# The trainer's pieces around a probe env (what sppo.build makes for a gymnasium id)
# ================================================================================================
def probe_args(**settings) -> sppo.Args:
    """sppo.Args for a probe: a 0/1 outcome without advantage normalisation (the paper's setting and the
    control benchmark's RL stage), 32 episodes per update; `settings` override any field."""
    return dataclasses.replace(sppo.Args(), **{"reward": "success", "norm_adv": False, "num_episodes": 32, **settings})


def learner(env: ProbeEnv, args: sppo.Args, seed: int = 0):
    """(actor, critic, optimizer) as sppo.build makes them: sppo.Actor, the critic ESTIMATORS asks for
    (value.PromptValue V(s0) for sppo, value.StepValue V(s_t) for ppo, None otherwise), one Adam."""
    torch.manual_seed(seed)
    obs_dim = env.single_observation_space.shape[0]
    actor = sppo.Actor(obs_dim, env.single_action_space, args.hidden)
    critic = {"prompt": lambda: PromptValue(obs_dim, args.hidden, "success" if args.reward == "success" else "return"),
              "step": lambda: StepValue(obs_dim, args.hidden)}.get(sppo.ESTIMATORS[args.algo].critic, lambda: None)()
    groups = [{"params": actor.parameters(), "lr": args.lr}]
    if critic is not None:
        groups.append({"params": critic.parameters(), "lr": args.critic_lr})
    return actor, critic, torch.optim.Adam(groups, eps=1e-5)


def learn(env: ProbeEnv, args: sppo.Args, nets, updates: int, seed: int = 0, first: int = 0,
          train_actor: bool = True) -> list[dict]:
    """`updates` calls of sppo.update on nets = (actor, critic, optimizer), numbered from `first` (each
    update's initial states come from its own seed, as in sppo.train); with train_actor=False only the
    critic learns (sppo.py's --critic-warmup). Returns the progress.csv rows update() returned."""
    actor, critic, optimizer = nets
    return [sppo.update(args, env, actor, critic, optimizer, seed=seed * 1_000_003 + first + u, train_actor=train_actor)[1]
            for u in range(updates)]


def train(env: ProbeEnv, args: sppo.Args, updates: int, seed: int = 0, train_actor: bool = True):
    """A fresh learner after `updates` updates: (actor, critic, rows)."""
    nets = learner(env, args, seed)
    rows = learn(env, args, nets, updates, seed, train_actor=train_actor)
    return nets[0], nets[1], rows


@torch.no_grad()
def p_action_1(actor: sppo.Actor, env: ProbeEnv) -> torch.Tensor:
    """pi(a0 = 1 | s0) for each context [C]."""
    return actor.net(env.s0()).softmax(-1)[:, 1]


def fresh_batch(env: ProbeEnv, actor, critic, args: sppo.Args, seed: int, group_size: int = 1):
    """A new batch from the actor and its advantages as sppo.update forms them (before any
    normalisation): (Episodes, outcome R [B], step advantages [T, B], the first actions a0 [B])."""
    batch = envs.rollout(env, actor.act, group_size=group_size, seed=seed)
    outcome = batch.success.float() if args.reward == "success" else batch.returns
    with torch.no_grad():
        advantages, _ = sppo.compute_advantages(args, batch, outcome, critic)
    return batch, outcome, per_step(advantages, batch.step_mask), batch.actions[0]


def context_of(batch: envs.Episodes, env: ProbeEnv) -> torch.Tensor:
    """The context of each episode [B], read off its s0."""
    return batch.s0[:, :env.n_contexts].argmax(1)


def credit(step_adv_0: torch.Tensor, a0: torch.Tensor, good: int = 1) -> float:
    """How much more advantage the first step gets when a0 is the good action than when it is not:
    E[A_0 | a0 = good] - E[A_0 | a0 != good] over a batch. The exact policy-gradient signal here is
    E[R | good] - E[R | other] (1.0 when the outcome is decided by a0)."""
    return float(step_adv_0[a0 == good].mean() - step_adv_0[a0 != good].mean())


# ================================================================================================
# The probes
# ================================================================================================
def constant_outcome(updates: int = 4, seed: int = 0) -> dict:
    """(a) R = 1 whatever happens, in episodes of 1, 3, 5 or 7 steps (by context): the critic V(s0) must
    learn the constant and the advantage must vanish -- A = R - V(s0) = 0, nothing left to learn.
    The outcome is read as the episode's return (--reward return): every step's reward up to its end,
    so steps after the end (the next episode) must not count.

    Pass mark: |V(s0) - 1| < 0.05 for every context and mean |A| < 0.05 on a fresh batch.
    Returns value [C], mean_abs_adv, adv_std (update()'s logged column, last update), passed."""
    env = ProbeEnv(32, win=[[1.0, 1.0]] * 4, lengths=(1, 3, 5, 7), seed=seed)
    args = probe_args(reward="return")
    actor, critic, rows = train(env, args, updates, seed)
    _, _, step_adv, _ = fresh_batch(env, actor, critic, args, seed=10_000 + seed)
    with torch.no_grad():
        value = critic(env.s0())
    mean_abs_adv = float(step_adv[0].abs().mean())
    return {"value": value.tolist(), "mean_abs_adv": mean_abs_adv, "adv_std": rows[-1]["adv_std"],
            "passed": bool((value - 1).abs().max() < 0.05 and mean_abs_adv < 0.05)}


CONTEXT_P = (0.1, 0.4, 0.6, 0.9)


def context_outcome(updates: int = 150, critic_lr: float = 1e-2, seed: int = 0) -> dict:
    """(b) P(R = 1) = 0.1, 0.4, 0.6 or 0.9, decided by the context s0 alone (three-step episodes): the
    critic must learn V(s0) = E[R | s0] (BCE on the 0/1 outcome, V = sigmoid(logit)), and the policy gets
    no signal: on a fresh batch the advantage averages 0 in every context (`mean_adv`) and credits
    neither action (`credit`, per context), so the policy stays where it started (near 50/50).
    The update is one pass in one minibatch (the LLM demo's default; a critic that is not detached from
    the policy loss then shows as a bias instead of a crash) over 256 episodes, at the control benchmark's
    RL-stage actor lr 1e-4 (envs.RL_STAGE) and critic lr `critic_lr`.

    A critic trained as the trainer trains it (Adam at a constant lr) does not settle: V(s0) jitters by
    ~0.05 around E[R | s0] from one update to the next, and the marks leave room for that.

    Pass mark: |V(s0) - E[R | s0]| < 0.1, |mean_adv| < 0.1, |credit| < 0.1 in every context, and
    |pi(a0 = 1 | s0) - its start| < 0.05. Returns value, target, mean_adv, credit, policy_drift (each [C]),
    passed."""
    env = ProbeEnv(256, win=[[p, p] for p in CONTEXT_P], lengths=(3,), seed=seed)
    args = probe_args(epochs=1, minibatches=1, lr=1e-4, critic_lr=critic_lr, num_episodes=256)
    nets = learner(env, args, seed)
    start = p_action_1(nets[0], env)
    learn(env, args, nets, updates, seed)
    actor, critic, _ = nets
    drift = p_action_1(actor, env) - start
    batch, _, step_adv, a0 = fresh_batch(env.copies(4096), actor, critic, args, seed=10_000 + seed)
    context = context_of(batch, env)
    mean_adv = torch.tensor([float(step_adv[0][context == c].mean()) for c in range(env.n_contexts)])
    credits = torch.tensor([credit(step_adv[0][context == c], a0[context == c]) for c in range(env.n_contexts)])
    with torch.no_grad():
        value = critic(env.s0())
    error = (value - torch.tensor(CONTEXT_P)).abs().max()
    return {"value": value.tolist(), "target": list(CONTEXT_P), "mean_adv": mean_adv.tolist(), "credit": credits.tolist(),
            "policy_drift": drift.tolist(),
            "passed": bool(error < 0.1 and mean_adv.abs().max() < 0.1 and credits.abs().max() < 0.1
                           and drift.abs().max() < 0.05)}


def action_outcome(warmup: int = 5, updates: int = 5, seed: int = 0) -> dict:
    """(c) A one-step episode whose outcome depends on the action: the context's right action (0 in
    context 0, 1 in context 1) wins with probability 0.9, the other with 0.1. As the trainer runs with
    --critic-warmup: `warmup` updates train only the critic, then `updates` train both (sppo's defaults:
    8 passes of 4 minibatches of 32 episodes).

    After the warm-up V(s0) = 0.5 (a uniform policy wins half the time in either context), so the
    advantage R - V(s0) credits the right action with E[R | right] - E[R | wrong] = 0.8 (credit(), on a
    fresh batch). A critic that also reads the action would learn Q(s0, a) instead: R - Q(s0, a) has
    mean 0 for either action -- the advantage collapses (and the critic's explained variance looks
    better: 0.64 instead of 0) while the policy gets no signal.

    Pass mark: credit after the warm-up > 0.6, and pi(right action | s0) > 0.9 in both contexts at the end.
    Returns credit, explained_var (the last warm-up update's, logged), p_right [C], passed."""
    env = ProbeEnv(32, win=[[0.9, 0.1], [0.1, 0.9]], lengths=(1,), seed=seed)
    args = probe_args()
    nets = learner(env, args, seed)
    rows = learn(env, args, nets, warmup, seed, train_actor=False)
    batch, _, step_adv, a0 = fresh_batch(env.copies(4096), nets[0], nets[1], args, seed=10_000 + seed)
    right = torch.where(context_of(batch, env) == 0, 1 - a0, a0)   # 1 where a0 was the context's right action
    warm_credit = credit(step_adv[0], right)
    learn(env, args, nets, updates, seed, first=warmup)
    p_right = p_action_1(nets[0], env) * torch.tensor([-1.0, 1.0]) + torch.tensor([1.0, 0.0])
    return {"credit": warm_credit, "explained_var": rows[-1]["explained_var"], "p_right": p_right.tolist(),
            "passed": bool(warm_credit > 0.6 and p_right.min() > 0.9)}


def delayed_credit(ks=(1, 4, 16, 64), lam: float = 0.95, warmup: int = 3, informed_warmup: int = 0,
                   seed: int = 0) -> dict:
    """(d) R = 1 iff the first action is 1, paid k steps later (episodes of k + 1 steps; every later
    action is irrelevant), under a uniform random policy. Each critic is trained as the trainer trains it
    (`warmup` updates of sppo.update with the actor frozen, as --critic-warmup), then a fresh batch is
    scored. The credit to the first action is credit(): E[A_0 | a0 = 1] - E[A_0 | a0 = 0], 1.0 for an
    unbiased estimator (R minus anything that does not depend on a0).

    * SPPO: A_0 = R - V(s0); s0 comes before a0, so V(s0) cannot depend on it: credit 1.0 for every k.
    * token-level PPO, GAE(gamma = 1, lambda): A_0 = sum_l lambda^l delta_l = lambda^k R - V(s_0)
      + (1 - lambda) sum_l lambda^(l-1) V(s_l). Only the critic's values can carry more than lambda^k of R
      back to a0, and only where they differ with a0. `gae_credit` is measured with observations that never
      show a0 (the same information SPPO's V(s0) has; a critic that cannot yet tell, as early in training
      or far from the reward -- the paper's tail effect): exactly lambda^k, 0.95^64 = 0.04.
      informed_warmup > 0 also trains a V(s_t) that sees a0 in every later observation, for that many
      updates, and returns its credit as `gae_credit_informed` (a clean a0 feature: it recovers ~1.0 within
      ~10 updates here; an LLM's critic must find the first token among thousands of later ones).

    Pass mark: SPPO's credit within 0.01 of 1.0 for every k; GAE's within 0.01 of lambda^k, so falling with
    k, below 0.1 at k = 64. Returns k, sppo_credit, gae_credit, lambda_k (lists over k), passed."""
    out = {"k": list(ks), "sppo_credit": [], "gae_credit": [], "lambda_k": [lam ** k for k in ks]}
    runs = [("sppo", False, warmup, "sppo_credit"), ("ppo", False, warmup, "gae_credit")]
    if informed_warmup:
        out["gae_credit_informed"] = []
        runs.append(("ppo", True, informed_warmup, "gae_credit_informed"))
    for k in ks:
        for algo, show, updates, key in runs:
            env = ProbeEnv(32, win=[[0.0, 1.0]], lengths=(k + 1,), show_first_action=show, seed=seed)
            args = probe_args(algo=algo, reward="return", gae_lambda=lam)
            actor, critic, _ = train(env, args, updates, seed, train_actor=False)
            _, _, step_adv, a0 = fresh_batch(env.copies(256), actor, critic, args, seed=10_000 + seed)
            out[key].append(credit(step_adv[0], a0))
    sppo_credit, gae_credit = torch.tensor(out["sppo_credit"]), torch.tensor(out["gae_credit"])
    out["passed"] = bool((sppo_credit - 1).abs().max() < 0.01 and (gae_credit - torch.tensor(out["lambda_k"])).abs().max() < 0.01
                         and (gae_credit[1:] < gae_credit[:-1]).all() and gae_credit[-1] < 0.1)
    return out


DIFFICULTY_WIN = ((0.8, 1.0), (0.4, 0.6), (0.0, 0.2))   # easy, medium, hard: P(R = 1 | a0 = 0, 1)


def difficulty(group_size: int = 8, groups: int = 3072, warmup: int = 150, seed: int = 0) -> dict:
    """(e) Three contexts of very different difficulty, where the right action (1) adds the same 0.2 to
    the success probability in each: easy 0.8 -> 1.0, medium 0.4 -> 0.6, hard 0.0 -> 0.2 (a uniform policy
    succeeds 90%, 50%, 10% of the time). One batch of `groups` x G episodes (G from each context, as
    GRPO samples them) from a uniform policy, scored by both estimators through sppo.compute_advantages:

    * SPPO, with V(s0) trained for `warmup` updates of single samples (as context_outcome): A = R - V(s0)
      is in outcome units -- its credit to the right action (credit()) is the true 0.2 in every context,
      its mean per context 0, and no advantage is 0 (|A| < 1e-3). One sample per context suffices.
    * GRPO: A = (R - mean_G) / std_G. Its mean per context is 0 too (a group's advantages sum to 0), but
      its credit is 0.2 / std_G: rescaled by the group's spread, so not in outcome units; and a group
      whose G rewards are all equal (flat_group_frac, p^G + (1 - p)^G: 43% of easy and hard groups at
      G = 8, under 1% of medium ones) gives all its G samples A = 0 -- G rollouts that teach nothing
      (zero_adv_frac, the LLM demo's logged column of that name).

    Pass mark: per context, SPPO's credit within 0.06 of 0.2, |mean A| < 0.15 (V(s0)'s jitter, see
    context_outcome) and zero_adv_frac = 0;
    GRPO's |mean A| < 1e-4, credit > 0.28 (above 1.4x the true 0.2), flat_group_frac within 0.07 of
    p^G + (1 - p)^G. Returns per context [easy, medium, hard]: p_success, sppo_credit, sppo_mean_adv,
    sppo_zero_adv_frac, grpo_credit, grpo_mean_adv, grpo_zero_adv_frac, flat_group_frac, flat_expected;
    and passed."""
    win = torch.tensor(DIFFICULTY_WIN)
    warm_env = ProbeEnv(256, win=win, lengths=(1,), seed=seed)
    warm_args = probe_args(epochs=1, minibatches=1, lr=1e-4, critic_lr=1e-2, num_episodes=256)
    actor, critic, _ = train(warm_env, warm_args, warmup, seed, train_actor=False)
    batch, outcome, sppo_adv, a0 = fresh_batch(warm_env.copies(group_size * groups), actor, critic, warm_args,
                                               seed=10_000 + seed, group_size=group_size)
    grpo_args = probe_args(algo="grpo", group_size=group_size)
    grpo_adv = per_step(sppo.compute_advantages(grpo_args, batch, outcome, None)[0], batch.step_mask)
    context = context_of(batch, warm_env)
    flat = (outcome.view(-1, group_size) == outcome.view(-1, group_size)[:, :1]).all(1)   # [groups]
    p = win.mean(1)                                                                       # uniform policy
    out = {k: [] for k in ("p_success", "sppo_credit", "sppo_mean_adv", "sppo_zero_adv_frac", "grpo_credit",
                           "grpo_mean_adv", "grpo_zero_adv_frac", "flat_group_frac")}
    out["flat_expected"] = (p ** group_size + (1 - p) ** group_size).tolist()
    for c in range(len(win)):
        here = context == c
        out["p_success"].append(float(outcome[here].mean()))
        for name, adv in (("sppo", sppo_adv[0]), ("grpo", grpo_adv[0])):
            out[f"{name}_credit"].append(credit(adv[here], a0[here]))
            out[f"{name}_mean_adv"].append(float(adv[here].mean()))
            out[f"{name}_zero_adv_frac"].append(float((adv[here].abs() < 1e-3).float().mean()))   # as llm_demo logs it
        out["flat_group_frac"].append(float(flat[here.view(-1, group_size)[:, 0]].float().mean()))
    t = {k: torch.tensor(v) for k, v in out.items()}
    out["passed"] = bool((t["sppo_credit"] - 0.2).abs().max() < 0.06 and t["sppo_mean_adv"].abs().max() < 0.15
                         and t["sppo_zero_adv_frac"].max() == 0 and t["grpo_mean_adv"].abs().max() < 1e-4
                         and t["grpo_credit"].min() > 0.28
                         and (t["flat_group_frac"] - t["flat_expected"]).abs().max() < 0.07)
    return out


# ================================================================================================
# The exercises of notebooks/04_probes_and_exercises.ipynb. Each checker measures a student's answer
# against a reference that is not the answer itself (objective.py's functions, sampled gradients, a
# probe) and returns, as a probe does, the numbers it measured and `passed`. tests/test_exercises.py
# holds every checker to a pass with the solutions in notebooks/solutions/ and to a miss with a wrong
# answer.
# ================================================================================================
@contextlib.contextmanager
def planted(bug):
    """A change to the code for the duration of a with-block, without pytest: `bug(patch)` calls
    patch.setattr(owner, name, value) -- as tests/test_probes.py's planted bugs call pytest's
    monkeypatch -- and every change is undone on the way out."""
    undo = []

    class Patch:
        def setattr(self, owner, name, value):
            undo.append((owner, name, getattr(owner, name)))
            setattr(owner, name, value)

    try:
        bug(Patch())
        yield
    finally:
        for owner, name, old in reversed(undo):
            setattr(owner, name, old)


# --- Exercise 1: how much effort does SPPO's critic need? ----------------------------------------
def check_critic_configs(configs: dict, warmup: int = 2, seed: int = 0) -> dict:
    """configs: {"default": {}, "frozen": {...}, "warm-up": {...}}, each a dict of sppo.Args settings
    (what a command line's flags would set). Checked by what they do, for three updates on probe (c)'s
    env, training as sppo.train does (the actor learns from update `critic_warmup` on):

    * default: actor and critic both learn from the first update (sppo's own settings);
    * frozen: the critic (almost) never moves -- every weight by < 1e-5 in each update -- and the actor
      learns from the first update;
    * warm-up: only the critic learns in the first `warmup` updates (the actor's weights exactly still),
      then both.
    Returns per config `actor_moved` and `critic_moved` (the largest weight change of each update, [3])
    and passed."""
    out, ok = {}, []
    for name in ("default", "frozen", "warm-up"):
        env = ProbeEnv(32, win=[[0.9, 0.1], [0.1, 0.9]], lengths=(1,), seed=seed)
        args = probe_args(**configs.get(name, {}))
        actor, critic, optimizer = learner(env, args, seed)
        moved = {"actor_moved": [], "critic_moved": []}
        for u in range(3):
            before = {net: [p.detach().clone() for p in module.parameters()] for net, module in (("actor", actor), ("critic", critic))}
            sppo.update(args, env, actor, critic, optimizer, seed=seed * 1_000_003 + u, train_actor=u >= args.critic_warmup)
            for net, module in (("actor", actor), ("critic", critic)):
                moved[f"{net}_moved"].append(max(float((p.detach() - q).abs().max()) for p, q in zip(module.parameters(), before[net])))
        out[name] = moved
        actor_learns = [m > 0 for m in moved["actor_moved"]]
        critic_learns = [m > 1e-3 for m in moved["critic_moved"]]
        if name == "default":
            ok.append(all(actor_learns) and all(critic_learns))
        elif name == "frozen":
            ok.append(all(actor_learns) and max(moved["critic_moved"]) < 1e-5)
        else:
            ok.append(actor_learns == [u >= warmup for u in range(3)] and all(critic_learns))
    out["passed"] = all(ok)
    return out


# four sets of final success rates (per config, one per seed) whose verdicts differ: a clear winner that is
# not the default, a lead within the noise, a mean that disagrees with the median, and a lead larger than two
# standard errors of the difference but smaller than two standard deviations of the seeds
VERDICT_CASES = (
    {"default": [0.50, 0.55, 0.52, 0.60], "frozen": [0.90, 0.95, 0.92, 0.94], "warm-up": [0.30, 0.35, 0.40, 0.32]},
    {"default": [0.90, 0.50, 0.80, 0.60], "frozen": [0.70, 0.85, 0.60, 0.75], "warm-up": [0.20, 0.30, 0.25, 0.30]},
    {"default": [0.30, 0.30, 0.30, 0.30], "frozen": [0.10, 0.20, 0.20, 0.25], "warm-up": [1.00, 0.20, 0.20, 0.20]},
    {"default": [0.60, 0.70, 0.65, 0.65], "frozen": [0.30, 0.40, 0.35, 0.30], "warm-up": [0.72, 0.77, 0.67, 0.72]},
)


def check_critic_verdict(verdict, finals: dict) -> dict:
    """verdict(finals) -> (name, clear): the config with the highest MEAN final success over its seeds,
    and whether its lead over the runner-up exceeds twice the standard error of the difference,
    2 * sqrt(se_best^2 + se_second^2), se = std over seeds (n - 1) / sqrt(n). Checked on the measured
    finals and on VERDICT_CASES. Returns per case (measured first) the verdict expected and the one
    given, and passed."""
    expected, given = [], []
    for case in (finals, *VERDICT_CASES):
        stats = {k: (torch.tensor(v, dtype=torch.float64).mean(), torch.tensor(v, dtype=torch.float64).std() / len(v) ** 0.5)
                 for k, v in case.items()}
        best, second = sorted(stats, key=lambda k: -stats[k][0])[:2]
        gap = stats[best][0] - stats[second][0]
        expected.append((best, bool(gap > 2 * (stats[best][1] ** 2 + stats[second][1] ** 2).sqrt())))
        try:
            name, clear = verdict({k: list(v) for k, v in case.items()})
            given.append((name, bool(clear)))
        except Exception as e:   # an unfinished answer (NotImplementedError, None, ...) is a miss, not a crash
            given.append(repr(e))
    return {"expected": expected, "given": given, "passed": expected == given}


# --- Exercise 2: GAE by hand ---------------------------------------------------------------------
def check_gae(gae_fn, seed: int = 0) -> dict:
    """gae_fn(rewards, values, last_value, gamma, lam) -> advantages: ONE episode as plain lists of
    floats (r_t, V(s_t) for t = 0 .. T-1; last_value = V after the last step, 0 if nothing follows).
    Compared with objective.gae_advantage in float64 on 64 random episodes (T = 1 .. 6, gamma 1 and
    0.9, lambda 0, 0.5, 0.95 and 1, last_value 0 or not). Pass mark: every advantage within 1e-9 of it
    (exact but for rounding). Returns cases, max_error, passed."""
    g = torch.Generator().manual_seed(seed)
    worst, cases = 0.0, 0
    for T in (1, 2, 3, 6):
        for gamma in (1.0, 0.9):
            for lam in (0.0, 0.5, 0.95, 1.0):
                for bootstrap in (False, True):
                    rewards = (torch.rand(T, generator=g, dtype=torch.float64) < 0.3).double()
                    values = torch.rand(T, generator=g, dtype=torch.float64)
                    last_value = torch.rand(1, generator=g, dtype=torch.float64) * bootstrap
                    want, _ = objective.gae_advantage(rewards[:, None], values[:, None], torch.ones(T, 1, dtype=torch.float64),
                                                      last_value, gamma, lam)
                    try:
                        got = torch.as_tensor(gae_fn(rewards.tolist(), values.tolist(), float(last_value), gamma, lam),
                                              dtype=torch.float64).reshape(-1)
                        error = float((got - want[:, 0]).abs().max()) if got.shape == (T,) else float("inf")
                    except Exception:
                        error = float("inf")
                    worst, cases = max(worst, error), cases + 1
    return {"cases": cases, "max_error": worst, "passed": worst < 1e-9}


# --- Exercise 3: the variance of the policy gradient with a 0/1 outcome --------------------------
# (q = pi(a = 1), w0, w1 = P(R = 1 | a), N = episodes per batch)
VARIANCE_SETTINGS = ((0.5, 0.2, 0.6, 4), (0.3, 0.1, 0.9, 8), (0.8, 0.5, 0.7, 2))
BASELINES = ("none", "batch_mean", "oracle")


def sampled_gradients(q: float, w0: float, w1: float, baseline: str, batch_size: int, batches: int,
                      seed: int = 0) -> torch.Tensor:
    """The one-parameter bandit of exercise 3: pi(a = 1) = sigmoid(theta) = q, outcome R ~ Bernoulli(w_a).
    `batches` batches of `batch_size` episodes; each episode's advantage from objective.py (none:
    reinforce_advantage, R; oracle: sppo_advantage with V(s0) = p = q w1 + (1 - q) w0; batch_mean: R minus
    its batch's mean, as --norm-adv centres); the gradient of objective.policy_loss at rho = 1 (one pass)
    by autograd. Returns the first episode's term of each batch, d/dtheta log pi(a) * A = (a - q) A [batches]
    (the loss is a mean: its gradient is minus the mean of these terms)."""
    n = batches * batch_size
    g = torch.Generator().manual_seed(seed)
    theta = torch.full((n,), torch.logit(torch.tensor(q, dtype=torch.float64)).item(), dtype=torch.float64,
                       requires_grad=True)                                    # one copy per episode: per-episode gradients
    action = (torch.rand(n, generator=g, dtype=torch.float64) < q).double()
    outcome = (torch.rand(n, generator=g, dtype=torch.float64) < torch.where(action > 0, w1, w0)).double()
    logp = torch.where(action > 0, F.logsigmoid(theta), F.logsigmoid(-theta))
    p = q * w1 + (1 - q) * w0
    advantage = {"none": lambda: objective.reinforce_advantage(outcome),
                 "oracle": lambda: objective.sppo_advantage(outcome, torch.full_like(outcome, p)),
                 "batch_mean": lambda: (outcome.view(-1, batch_size) - outcome.view(-1, batch_size).mean(1, keepdim=True)).view(-1),
                 }[baseline]()
    loss, _ = objective.policy_loss(logp[None], logp.detach()[None], advantage, torch.ones(1, n, dtype=torch.float64))
    grad, = torch.autograd.grad(loss, theta)
    return (-grad * n).view(-1, batch_size)[:, 0]


def check_variance(variance_fn, batches: int = 200_000, seed: int = 0) -> dict:
    """variance_fn(q, w0, w1, baseline, batch_size) -> the closed-form variance of one episode's gradient
    term (a - q) A under `baseline` (none | batch_mean | oracle), against its sampled variance
    (sampled_gradients, `batches` draws) at each of VARIANCE_SETTINGS. Pass mark: within 4 standard
    errors of the sampled variance everywhere (its standard error: std of (g - mean)^2 / sqrt(batches)).
    Returns rows of (q, w0, w1, N, baseline, closed form, sampled, standard error) and passed."""
    rows, ok = [], True
    for q, w0, w1, n in VARIANCE_SETTINGS:
        for i, baseline in enumerate(BASELINES):
            g = sampled_gradients(q, w0, w1, baseline, n, batches, seed=seed + i)
            squared = (g - g.mean()) ** 2
            sampled, se = float(squared.mean()), float(squared.std() / batches ** 0.5)
            try:
                closed = float(variance_fn(q, w0, w1, baseline, n))
            except Exception:
                closed = float("inf")
            ok &= abs(closed - sampled) <= 4 * se
            rows.append((q, w0, w1, n, baseline, closed, sampled, se))
    return {"rows": rows, "passed": bool(ok)}


# --- Exercise 4: the silent bug ------------------------------------------------------------------
def suspect_update(args, env, actor, critic, optimizer, seed: int, train_actor: bool = True):
    """Exercise 4's trainer: Sequence-Level PPO's update written out on one screen (after sppo.update,
    without its logging and checks), for a 0/1 outcome. It runs, its value loss falls and its explained
    variance looks fine -- and one line is wrong. Same interface as sppo.update: -> (batch, logged row)."""
    batch = envs.rollout(env, actor.act, seed=seed)
    outcome = batch.success.float()                                       # R [B], 0 or 1
    judged = batch.final_obs                                              # [B, obs_dim]: where each outcome was judged
    with torch.no_grad():
        value = critic(judged)                                            # V [B]
        advantage = objective.sppo_advantage(outcome, value)              # A = R - V, shared by every step
    for _ in range(args.epochs):
        for idx in torch.randperm(len(outcome)).tensor_split(args.minibatches):
            mask = batch.step_mask[:, idx]
            logp, _ = actor.logp_entropy(batch.obs[:, idx], batch.actions[:, idx])
            policy_loss, _ = objective.policy_loss(logp, batch.logp[:, idx], advantage[idx], mask, args.ratio, args.clip_eps)
            value_loss = critic.loss(judged[idx], outcome[idx]).mean()
            optimizer.zero_grad()
            ((policy_loss if train_actor else 0) + value_loss).backward()
            optimizer.step()
    return batch, {"value_loss": float(value_loss.detach()), "explained_var": objective.explained_variance(value, outcome),
                   "adv_std": float(advantage.std())}


def one_pass_action_outcome(update, warmup: int = 30, updates: int = 30, seed: int = 0) -> dict:
    """Probe (c)'s bandit (the context's right action wins 0.9 of the time, the other 0.1; here 3 steps per
    episode, the first decides) trained by `update` (sppo.update's interface) with one pass in one
    minibatch of 256 episodes -- the LLM demo's default: every ratio is 1 and the step is exactly the
    policy gradient with the critic as baseline -- the critic alone for `warmup` updates, then both.
    (With several clipped passes over 32 episodes, sppo's defaults as in action_outcome, the actor also
    fits the batch's noise: without a signal it drifts, and may drift to the right action by chance.)

    Pass mark: pi(right action | s0) > 0.9 in both contexts at the end. Returns p_right [C], and the last
    warm-up update's logged value_loss and explained_var; passed."""
    env = ProbeEnv(256, win=[[0.9, 0.1], [0.1, 0.9]], lengths=(3,), seed=seed)
    args = probe_args(epochs=1, minibatches=1, num_episodes=256, critic_lr=1e-2)
    actor, critic, optimizer = learner(env, args, seed)
    rows = [update(args, env, actor, critic, optimizer, seed=seed * 1_000_003 + u, train_actor=u >= warmup)[1]
            for u in range(warmup + updates)]
    p_right = p_action_1(actor, env) * torch.tensor([-1.0, 1.0]) + torch.tensor([1.0, 0.0])
    return {"p_right": p_right.tolist(), "value_loss": rows[warmup - 1]["value_loss"],
            "explained_var": rows[warmup - 1]["explained_var"], "passed": bool(p_right.min() > 0.9)}


def check_bug_fix(fixed_update, seed: int = 0) -> dict:
    """one_pass_action_outcome run with suspect_update and with `fixed_update` (sppo.update's interface).
    Pass mark: the suspect misses the probe's pass mark and the fix meets it (and is not sppo.update
    itself). Returns each one's probe result (`suspect`, `fixed`) and passed."""
    out = {}
    for name, update in (("suspect", suspect_update), ("fixed", fixed_update)):
        try:
            out[name] = one_pass_action_outcome(update, seed=seed)
        except Exception as e:   # an unfinished answer is a miss, not a crash
            out[name] = {"error": repr(e), "passed": False}
    out["passed"] = bool(not out["suspect"]["passed"] and out["fixed"]["passed"] and fixed_update is not sppo.update)
    return out
