"""The math of Sequence-Level PPO and its relatives: advantage estimators and the clipped objective.

Pure torch: no environment, no language model. Both trainers import this file -- sppo.py on control
tasks, llm_demo.py on a language model -- so the function that solves CartPole is the one that trains
the LM. Tensors are time-major, as a batch of control episodes: [T, B] with one column per episode
(LLM: per response) and a step mask that is 1.0 on real steps (LLM: the response mask, transposed).

Switching algorithm is switching the advantage estimator. ESTIMATORS below says, for each algorithm,
what it needs and how it turns a batch into advantages; the rest of training is the same for all:

    sppo       A_b = R_b - V(s0_b)                        critic V(s0) (LLM: V(prompt)), 1 episode per context
    ppo        GAE over a per-step critic V(s_t)          token-level PPO, 1 episode per context
    grpo       A_b = (R_b - mean_group) / std_group       no critic, G episodes per context
    rloo       A_b = R_b - mean of the other G-1          no critic, G episodes per context
    reinforce  A_b = R_b                                  no baseline at all
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


# ================================================================================================
# The advantage estimators, side by side. Sequence-level ones return one number per episode [B];
# the loss broadcasts it to every real step. (LLM: per response, broadcast to every token.)
# ================================================================================================
def sppo_advantage(outcome: torch.Tensor, prompt_value: torch.Tensor) -> torch.Tensor:
    """A_b = R_b - V(s0_b). outcome [B], prompt_value [B] -> [B]. One sample per context: the learned
    V(s0) replaces the G-sample group mean of GRPO (paper Eq. 2).

    Example: R = [1, 0, 1], V = [0.8, 0.3, 0.2] -> A = [+0.2, -0.3, +0.8]: the unexpected success on the
    hard prompt gets the most credit, the expected one on the easy prompt little."""
    return outcome - prompt_value


def grpo_advantage(outcome: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """A_b = (R_b - mean_g) / (std_g + eps) over each consecutive group of G episodes that share s0.
    outcome [B] -> [B]. With a 0/1 outcome and success rate p this is +sqrt((1-p)/p) for a success and
    -sqrt(p/(1-p)) for a failure: rare successes get large credit. std is the unbiased one (as verl).

    Example: G = 4, R = [1, 0, 0, 0] -> A = [+1.5, -0.5, -0.5, -0.5]; R = [0, 0, 0, 0] -> all 0: a group
    without spread teaches nothing."""
    grouped = outcome.view(-1, group_size)
    return ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + eps)).view(-1)


def rloo_advantage(outcome: torch.Tensor, group_size: int) -> torch.Tensor:
    """A_b = R_b - mean of the OTHER G-1 outcomes of its group (leave-one-out: the baseline does not
    depend on the episode's own outcome, so the gradient stays unbiased). outcome [B] -> [B].

    Example: G = 4, R = [1, 0, 0, 0] -> A = [+1, -1/3, -1/3, -1/3]."""
    grouped = outcome.view(-1, group_size)
    return (grouped - (grouped.sum(1, keepdim=True) - grouped) / (group_size - 1)).view(-1)


def reinforce_advantage(outcome: torch.Tensor) -> torch.Tensor:
    """A_b = R_b: no baseline, so every episode of a good batch is pushed up -- the variance SPPO's
    V(s0) removes. outcome [B] -> [B]."""
    return outcome.clone()


def gae_advantage(rewards: torch.Tensor, values: torch.Tensor, step_mask: torch.Tensor,
                  last_value: torch.Tensor, gamma: float, lam: float):
    """Token-level credit assignment (Schulman et al. 2016), one advantage per step.

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t);   A_t = sum_l (gamma * lam)^l * delta_{t+l}
    rewards, values, step_mask [T, B]; last_value [B] = V(state after the last real step), already
    zero where the episode terminated (no future) and V(s_end) where it was cut by a time limit
    (the future exists, we just did not see it -- bootstrap). Returns (advantages [T, B], returns
    [T, B] = advantages + values, the critic's regression target); both are zero on padding.
    With gamma = lam = 1, A_t = G_t - V(s_t), the Monte-Carlo advantage.

    Example: one episode of 3 steps, reward 1 at the end, V = [0.5, 0.6, 0.9], gamma = lam = 1 ->
    A = [0.5, 0.4, 0.1]: each step is credited with what happened after it, against its own V(s_t).
    """
    # V(s_{t+1}) while the episode runs, the bootstrap value right after its last real step
    next_mask = torch.cat([step_mask[1:], torch.zeros_like(step_mask[:1])])
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])])
    next_values = next_mask * next_values + (1 - next_mask) * last_value
    deltas = rewards + gamma * next_values - values                         # [T, B]
    # The backward recursion A_t = m_t * (delta_t + gamma * lam * m_{t+1} * A_{t+1}) (m: step_mask) is
    # a linear recurrence A_t = x_t + c_t * A_{t+1}. A python loop over it costs T tiny steps (20 ms at
    # T = 1000); recursive doubling solves it in log2(T) vectorised passes: after the pass with shift
    # k, A_t holds the sum over the next 2k steps of its chain and c_t the product of the 2k
    # coefficients that link it to what lies beyond. (tests/test_math.py keeps the loop as reference.)
    advantages = deltas * step_mask                                         # x_t   [T, B]
    link = gamma * lam * next_mask * step_mask                              # c_t   [T, B], 0 at an episode's end
    k = 1
    while k < rewards.shape[0]:
        # the last k steps have nothing k steps ahead of them: they stay as they are
        advantages = torch.cat([advantages[:-k] + link[:-k] * advantages[k:], advantages[-k:]])
        link = torch.cat([link[:-k] * link[k:], link[-k:]])
        k *= 2
    return advantages, (advantages + values) * step_mask


def outcome_at_end(outcome: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """The per-step rewards of a 0/1 outcome task: R on each episode's last real step, 0 elsewhere.
    outcome [B], step_mask [T, B] -> rewards [T, B] (what GAE spreads back; the sequence-level
    estimators read R directly)."""
    last_step = (step_mask.sum(0).long() - 1).clamp(min=0)
    return torch.zeros_like(step_mask, dtype=outcome.dtype).scatter_(0, last_step[None], outcome[None])


# ================================================================================================
# One switch for both trainers: what each algorithm needs, and its advantage from what it got.
# ================================================================================================
@dataclass
class Baselines:
    """What an estimator may read beside the outcome; a trainer fills in the fields its algorithm's
    `Estimator.critic` asks for (and `group_size` when `grouped`)."""
    prompt_value: torch.Tensor | None = None   # V(s0) [B]                                   critic "prompt"
    rewards: torch.Tensor | None = None        # r_t [T, B] (outcome_at_end for a 0/1 task)  critic "step"
    step_values: torch.Tensor | None = None    # V(s_t) [T, B], zero on padding
    step_mask: torch.Tensor | None = None      # [T, B]
    last_value: torch.Tensor | None = None     # V after the last real step [B] (0: nothing follows)
    gamma: float = 1.0
    lam: float = 1.0
    group_size: int = 1                        # G episodes per context, consecutive in the batch


@dataclass(frozen=True)
class Estimator:
    critic: str | None     # "prompt": a scalar V(s0) per episode; "step": V(s_t) per step; None: no critic
    grouped: bool          # G episodes share each context (sampled as consecutive copies)
    advantage: Callable    # (outcome R [B], Baselines) -> advantages: [B] per episode, or [T, B] per step


ESTIMATORS: dict[str, Estimator] = {
    "sppo":      Estimator("prompt", False, lambda R, b: sppo_advantage(R, b.prompt_value)),
    "ppo":       Estimator("step",   False, lambda R, b: gae_advantage(b.rewards, b.step_values, b.step_mask,
                                                                      b.last_value, b.gamma, b.lam)[0]),
    "grpo":      Estimator(None,     True,  lambda R, b: grpo_advantage(R, b.group_size)),
    "rloo":      Estimator(None,     True,  lambda R, b: rloo_advantage(R, b.group_size)),
    "reinforce": Estimator(None,     False, lambda R, b: reinforce_advantage(R)),
}


def estimate(algo: str, outcome: torch.Tensor, baselines: Baselines) -> torch.Tensor:
    """The advantage of `algo` (a key of ESTIMATORS): [B] for the sequence-level estimators, [T, B] for ppo."""
    return ESTIMATORS[algo].advantage(outcome, baselines)


def per_step(advantages: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """A sequence advantage [B] broadcast to every step [T, B] (a per-step one [T, B] as it is)."""
    return advantages.expand_as(step_mask) if advantages.dim() == 1 else advantages


def standardize(step_adv: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """(A - mean) / std over the batch's real steps (--norm-adv). step_adv, step_mask [T, B] -> [T, B].
    Subtracting the mean is itself a baseline: REINFORCE with it has a batch-mean baseline.

    Advantages without spread are not scaled. They count as equal when their std is at most 1e-5 of
    their largest magnitude: then the std measures only the rounding of the mean (~1e-7 relative in
    float32), and dividing by it would turn that noise into +-1 (one episode with A = -0.731 on every
    step came out as +0.856). Equal advantages are
      * of one sequence (one column with real steps): returned unchanged. A single sample has no batch
        to be standardised against, and its own mean as a baseline would erase its only signal (SB3
        normalises only when there is more than one sample);
      * of several sequences: centred, i.e. exactly 0 -- none did better than the others (what exact
        arithmetic gives, as GRPO's group without spread).
    Per-step advantages of one sequence (ppo's GAE) that do vary are standardised as usual."""
    mean = masked_mean(step_adv, step_mask)
    centred = step_adv - mean
    std = masked_mean(centred ** 2, step_mask).sqrt()
    if std <= 1e-5 * (step_adv.abs() * step_mask).max():   # all equal, up to the rounding of the mean
        one_sequence = int((step_mask.sum(0) > 0).sum()) <= 1
        return step_adv.clone() if one_sequence else torch.zeros_like(step_adv)
    return centred / (std + 1e-8)


# ================================================================================================
# The loss: PPO's clipped surrogate over real steps, at three ratio granularities.
# ================================================================================================
def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real steps only ("token-mean"): padding after an episode ends never leaks in."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def log_ratio(logp: torch.Tensor, logp_old: torch.Tensor, step_mask: torch.Tensor, ratio: str) -> torch.Tensor:
    """log rho [T, B] at the chosen granularity (all inputs [T, B]).

    token: log rho_t = log pi(a_t|s_t) - log pi_old(a_t|s_t), each step clipped on its own (paper Eq. 3)
    seq:   log rho   = mean_t of the token log-ratios (geometric mean, as GSPO), one per episode
    joint: log rho   = sum_t of the token log-ratios = log pi(episode)/pi_old(episode) (transition
           probabilities cancel), one per episode; it leaves [1-eps, 1+eps] as soon as the policy moves.
    For seq and joint the VALUE is the sequence's ratio (it decides clipping for all its steps) while
    the GRADIENT flows through each step's own log-prob: d rho/d theta = rho * grad log pi(a_t|s_t).
    Summed over the episode that is rho * grad log pi(episode) -- the exact policy gradient at rho = 1.
    """
    step_log_ratio = (logp - logp_old) * step_mask
    if ratio == "token":
        return step_log_ratio
    seq_log_ratio = step_log_ratio.sum(0)
    if ratio == "seq":
        seq_log_ratio = seq_log_ratio / step_mask.sum(0).clamp(min=1)
    # value: the sequence's ratio on each of its real steps; gradient: each step's own log-prob
    return (seq_log_ratio.detach() + logp - logp.detach()) * step_mask


def policy_loss(logp, logp_old, advantages, step_mask, ratio="token", clip_eps=0.2, dual_clip=3.0):
    """L = - token-mean of min(rho * A, clip(rho, 1-eps, 1+eps) * A), with dual-clip for A < 0.

    logp, logp_old, step_mask [T, B]; advantages [T, B] or [B] (a sequence advantage, broadcast).
    Dual clip (Ye et al. 2020, kept by the official code): for A < 0 the surrogate is also bounded
    below by c * A, so one very unlikely old action cannot produce an unbounded loss.
    Returns (loss, stats) with clip_frac (share of real steps whose ratio lies outside [1-eps, 1+eps],
    CleanRL's definition: the min may still pick the unclipped term there) and approx_kl
    (mean of (rho_t - 1) - log rho_t over real steps, always with token ratios: a pure diagnostic).
    """
    if advantages.dim() == 1:
        advantages = advantages.expand_as(logp)
    # exp of a log-ratio above ~88.7 is inf in float32, and the backward pass of the min / dual clip then
    # multiplies that inf by the zero gradient of the branch not taken: NaN, which no gradient clipping
    # removes (--ratio joint sums a whole episode's log-ratios, so it gets there quickly). Clamp to +-20
    # first, as verl does: rho = e^20 ~ 5e8 lies far outside any clip range, so the objective keeps its
    # value wherever clipping decides it. The clamp is on the differentiable log-ratio, as verl's (its
    # GSPO loss too): a ratio beyond +-20 is saturated and passes no gradient, like a ratio PPO's clip
    # has cut. For seq and joint the sequence's value decides, so a whole episode saturates together.
    log_rho = log_ratio(logp, logp_old, step_mask, ratio).clamp(-20.0, 20.0)
    rho = log_rho.exp()
    surrogate = torch.min(rho * advantages, rho.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    if dual_clip > 0:
        surrogate = torch.where(advantages < 0, torch.max(surrogate, dual_clip * advantages), surrogate)
    loss = -masked_mean(surrogate, step_mask)
    with torch.no_grad():
        token_log_rho = (logp - logp_old) * step_mask
        stats = {"clip_frac": masked_mean(((rho - 1).abs() > clip_eps).float(), step_mask),
                 "approx_kl": masked_mean(token_log_rho.exp() - 1 - token_log_rho, step_mask)}
    return loss, stats


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var[target - pred] / Var[target]: 1 is a perfect critic, 0 no better than a constant."""
    var = target.var()
    return float("nan") if var == 0 else float(1 - (target - pred).var() / var)
