"""Exact math of sppo.py and value.py against hand-computed values and plain Python loops.

Everything runs in float64 where the function allows it, so the comparisons are tight; the whole
file takes a few seconds on a CPU.
"""
import math
import random

import gymnasium as gym
import pytest
import torch
import torch.nn.functional as F

from objective import (gae_advantage, grpo_advantage, log_ratio, masked_mean, policy_loss, reinforce_advantage,
                       rloo_advantage, sppo_advantage, standardize)
from sppo import Actor
from value import PromptValue, ReturnScaler, StepValue

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


def prefix_mask(lengths, T):
    """[T, B] step mask: 1.0 on the first lengths[b] steps of column b, 0.0 after."""
    return (torch.arange(T)[:, None] < torch.tensor(lengths)[None, :]).to(D)


def close(actual, expected, **kw):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), **kw)


# ------------------------------------------------------------------------------------------------
# Sequence-level advantage estimators
# ------------------------------------------------------------------------------------------------
def test_sppo_advantage_is_outcome_minus_prompt_value():
    close(sppo_advantage(t([1.0, 0.0, 3.5, -2.0]), t([0.25, 0.5, 4.0, -2.0])), [0.75, -0.5, -0.5, 0.0])


def test_grpo_advantage_by_hand():
    # group [1,0,0,1]: mean 0.5, unbiased std = sqrt(4 * 0.25 / 3) = sqrt(1/3) = 0.57735
    #   -> +-0.5 / 0.57735 = +-0.866025 (sqrt(3)/2)
    # group [1,1,1,0]: mean 0.75, unbiased var = (3 * 0.0625 + 0.5625) / 3 = 0.25, std 0.5
    #   -> successes 0.25 / 0.5 = 0.5, the failure -0.75 / 0.5 = -1.5
    eps = 1e-6
    a = grpo_advantage(t([1, 0, 0, 1, 1, 1, 1, 0]), group_size=4, eps=eps)
    s1 = math.sqrt(1 / 3)
    close(a, [0.5 / (s1 + eps), -0.5 / (s1 + eps), -0.5 / (s1 + eps), 0.5 / (s1 + eps),
              0.25 / (0.5 + eps), 0.25 / (0.5 + eps), 0.25 / (0.5 + eps), -0.75 / (0.5 + eps)])
    close(a[:4], [math.sqrt(3) / 2, -math.sqrt(3) / 2, -math.sqrt(3) / 2, math.sqrt(3) / 2], rtol=1e-5, atol=0)


def test_grpo_advantage_equal_outcomes_give_zero():
    a = grpo_advantage(t([1, 1, 1, 0, 0, 0, 5, 5, 5]), group_size=3)
    assert torch.equal(a, torch.zeros(9, dtype=D))


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_grpo_advantage_binary_closed_form(p):
    G = 1000
    ones = int(p * G)
    outcome = t([1.0] * ones + [0.0] * (G - ones))[torch.randperm(G, generator=torch.Generator().manual_seed(0))]
    a = grpo_advantage(outcome, group_size=G)
    success, failure = a[outcome == 1], a[outcome == 0]
    # every success / failure gets the same value; std is unbiased, hence only ~1e-3 off the closed form
    assert torch.allclose(success, success[0]) and torch.allclose(failure, failure[0])
    assert success[0].item() == pytest.approx(math.sqrt((1 - p) / p), rel=1e-2)
    assert failure[0].item() == pytest.approx(-math.sqrt(p / (1 - p)), rel=1e-2)


def test_rloo_advantage_leave_one_out_by_hand():
    # group [1,0,0,1]: baselines are the means of the other three: 1/3, 2/3, 2/3, 1/3
    # group [2,4,6,8]: baselines 6, 16/3, 14/3, 4
    a = rloo_advantage(t([1, 0, 0, 1, 2, 4, 6, 8]), group_size=4)
    close(a, [1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3, 2 - 6, 4 - 16 / 3, 6 - 14 / 3, 8 - 4])


def test_rloo_advantage_group_of_two():
    close(rloo_advantage(t([3.0, 1.0, 5.0, 5.0]), group_size=2), [2.0, -2.0, 0.0, 0.0])


def test_rloo_and_grpo_agree_after_batch_standardisation_when_one_group_has_spread():
    """Within a group, RLOO's advantage is (R - mean) * G / (G - 1) and GRPO's (R - mean) / std: the same up
    to a scale per group. --norm-adv's batch standardisation removes one common scale, so the two coincide
    when at most one group has spread (or the groups share a std) and part when two groups' stds differ --
    why the suite's RLOO seed 1 repeated GRPO's on its hard tasks and parted from it on arith-d1."""
    mask = torch.ones(1, 8)
    norm = lambda a: standardize(a.view(1, -1), mask).view(-1)
    one = t([1, 0, 0, 0, 0, 0, 0, 0])   # groups of 4: the second without spread
    close(norm(rloo_advantage(one, 4)), norm(grpo_advantage(one, 4)))
    r6 = 6 ** 0.5   # centred [3, -1, -1, -1, 0, 0, 0, 0] / 4, whose std over the 8 is sqrt(6) / 8
    close(norm(rloo_advantage(one, 4)), [r6, -r6 / 3, -r6 / 3, -r6 / 3, 0, 0, 0, 0])
    two = t([1, 0, 0, 0, 1, 1, 0, 0])   # both with spread, stds 0.5 and 0.577: the scales differ
    assert not torch.allclose(norm(rloo_advantage(two, 4)), norm(grpo_advantage(two, 4)), atol=1e-3)


def test_reinforce_advantage_is_an_unchanged_copy():
    R = t([3.0, -1.0, 0.5])
    A = reinforce_advantage(R)
    assert torch.equal(A, R)
    assert A is not R and A.data_ptr() != R.data_ptr()
    A += 1                                        # mutating the advantage leaves the outcomes alone
    assert torch.equal(R, t([3.0, -1.0, 0.5]))


# ------------------------------------------------------------------------------------------------
# GAE
# ------------------------------------------------------------------------------------------------
def gae_reference(rewards, values, lengths, last_value, gamma, lam):
    """Obviously-correct GAE: per episode, backwards over its real steps only, in Python floats."""
    T, B = len(rewards), len(rewards[0])
    adv = [[0.0] * B for _ in range(T)]
    ret = [[0.0] * B for _ in range(T)]
    for b in range(B):
        L = lengths[b]
        running = 0.0
        for step in reversed(range(L)):
            next_value = values[step + 1][b] if step + 1 < L else last_value[b]
            delta = rewards[step][b] + gamma * next_value - values[step][b]
            running = delta + gamma * lam * running
            adv[step][b] = running
            ret[step][b] = running + values[step][b]
    return adv, ret


def test_gae_hand_computed():
    # T=3, one episode, rewards [1,0,2], values [0.5,0.2,0.1], gamma 0.9, lambda 0.8, last_value 0
    #   delta_2 = 2 + 0.9*0   - 0.1 =  1.9
    #   delta_1 = 0 + 0.9*0.1 - 0.2 = -0.11
    #   delta_0 = 1 + 0.9*0.2 - 0.5 =  0.68
    #   A_2 = 1.9
    #   A_1 = -0.11 + 0.72 * 1.9   = 1.258
    #   A_0 =  0.68 + 0.72 * 1.258 = 1.58576
    #   returns = A + V = [2.08576, 1.458, 2.0]
    adv, ret = gae_advantage(t([[1.0], [0.0], [2.0]]), t([[0.5], [0.2], [0.1]]), t([[1.0], [1.0], [1.0]]),
                             t([0.0]), gamma=0.9, lam=0.8)
    close(adv, [[1.58576], [1.258], [1.9]])
    close(ret, [[2.08576], [1.458], [2.0]])


def test_gae_hand_computed_bootstrap():
    # the same episode cut by a time limit with V(s_end) = 1.0: delta_2 = 2 + 0.9 - 0.1 = 2.8
    #   A_2 = 2.8, A_1 = -0.11 + 0.72*2.8 = 1.906, A_0 = 0.68 + 0.72*1.906 = 2.05232
    adv, _ = gae_advantage(t([[1.0], [0.0], [2.0]]), t([[0.5], [0.2], [0.1]]), t([[1.0], [1.0], [1.0]]),
                           t([1.0]), gamma=0.9, lam=0.8)
    close(adv, [[2.05232], [1.906], [2.8]])


@pytest.mark.parametrize("trial", range(6))
def test_gae_matches_per_episode_loop(trial):
    rng = random.Random(trial)
    T = 7
    lengths = [1, T, 3, rng.randint(1, T), T, 2, rng.randint(1, T)]
    B = len(lengths)
    gamma = rng.choice([1.0, 0.99, rng.uniform(0.5, 1.0)])
    lam = rng.choice([0.0, 1.0, 0.95, rng.uniform(0.0, 1.0)])
    rewards = [[rng.gauss(0, 1) if s < lengths[b] else 1e6 for b in range(B)] for s in range(T)]   # garbage
    values = [[rng.gauss(0, 2) if s < lengths[b] else -1e6 for b in range(B)] for s in range(T)]   # on padding
    last_value = [rng.gauss(0, 2) for _ in range(B)]
    adv, ret = gae_advantage(t(rewards), t(values), prefix_mask(lengths, T), t(last_value), gamma, lam)
    ref_adv, ref_ret = gae_reference(rewards, values, lengths, last_value, gamma, lam)
    close(adv, ref_adv)
    close(ret, ref_ret)
    padding = prefix_mask(lengths, T) == 0
    assert torch.all(adv[padding] == 0) and torch.all(ret[padding] == 0)


def gae_loop(rewards, values, step_mask, last_value, gamma, lam):
    """objective.gae_advantage as it was written before it was vectorised: the backward recursion, one
    python step per time step. The reference for the recursive-doubling version."""
    next_mask = torch.cat([step_mask[1:], torch.zeros_like(step_mask[:1])])
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])])
    next_values = next_mask * next_values + (1 - next_mask) * last_value
    deltas = rewards + gamma * next_values - values
    advantages, running = torch.zeros_like(rewards), torch.zeros_like(last_value)
    for step in reversed(range(rewards.shape[0])):
        running = (deltas[step] + gamma * lam * next_mask[step] * running) * step_mask[step]
        advantages[step] = running
    return advantages, (advantages + values) * step_mask


@pytest.mark.parametrize("T", [1, 2, 3, 8, 37, 1000, 1025])
def test_gae_matches_the_loop_on_random_inputs(T):
    g = torch.Generator().manual_seed(T)
    B = 9
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[:2] = torch.tensor([1, T])                                     # the shortest and the longest
    mask = prefix_mask(lengths.tolist(), T)
    rewards, values = torch.randn(T, B, generator=g, dtype=D), torch.randn(T, B, generator=g, dtype=D) * 3
    last_value = torch.randn(B, generator=g, dtype=D)
    for gamma, lam in [(1.0, 1.0), (0.99, 0.95), (1.0, 0.0), (0.9, 0.5)]:
        inputs = (rewards, values, mask, last_value)
        ref_adv, ref_ret = gae_loop(*inputs, gamma, lam)
        adv, ret = gae_advantage(*inputs, gamma, lam)
        torch.testing.assert_close(adv, ref_adv, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(ret, ref_ret, atol=1e-10, rtol=1e-10)
        # in float32 both round; the doubling sums in a tree, so it is no less accurate than the loop
        # (the loop's own error reaches ~4e-5 at T = 1000 with gamma = lam = 1)
        adv32 = gae_advantage(*(x.float() for x in inputs), gamma, lam)[0]
        loop32 = gae_loop(*(x.float() for x in inputs), gamma, lam)[0]
        err, loop_err = ((x.double() - ref_adv).abs().max() for x in (adv32, loop32))
        assert err <= 2 * loop_err + 1e-5, (err, loop_err)


def test_gae_gamma_lambda_one_is_reward_to_go_minus_value():
    T, lengths = 6, [1, 6, 4, 2, 5]
    B = len(lengths)
    mask = prefix_mask(lengths, T)
    rewards = torch.randn(T, B, dtype=D, generator=torch.Generator().manual_seed(1)) * mask
    values = torch.randn(T, B, dtype=D, generator=torch.Generator().manual_seed(2)) * mask
    adv, ret = gae_advantage(rewards, values, mask, torch.zeros(B, dtype=D), gamma=1.0, lam=1.0)
    reward_to_go = rewards.flip(0).cumsum(0).flip(0)                        # G_t = sum_{k >= t} r_k
    close(adv, (reward_to_go - values) * mask)
    close(ret, reward_to_go * mask)


# ------------------------------------------------------------------------------------------------
# Ratio granularities
# ------------------------------------------------------------------------------------------------
LOGP_OLD = [[-1.0, -0.5], [-0.7, -2.0], [-0.3, -1.0]]
DIFF = [[0.1, 0.3], [-0.2, 0.5], [0.4, 7.0]]        # logp - logp_old; 7.0 sits on padding
MASK32 = [[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]       # episode 0: 3 steps, episode 1: 2 steps


def ratio_example():
    logp_old = t(LOGP_OLD)
    return logp_old + t(DIFF), logp_old, t(MASK32)


def test_log_ratio_token_by_hand():
    logp, logp_old, mask = ratio_example()
    close(log_ratio(logp, logp_old, mask, "token"), [[0.1, 0.3], [-0.2, 0.5], [0.4, 0.0]])


@pytest.mark.parametrize("mode, per_episode", [("seq", [0.3 / 3, 0.8 / 2]),     # mean of the real steps
                                               ("joint", [0.3, 0.8])])          # sum of the real steps
def test_log_ratio_sequence_by_hand(mode, per_episode):
    logp, logp_old, mask = ratio_example()
    lr = log_ratio(logp, logp_old, mask, mode)
    real = mask > 0
    close(lr[real], t([[per_episode[0], per_episode[1]]] * 3)[real])


@pytest.mark.parametrize("mode", ["token", "seq", "joint"])
def test_log_ratio_gradient_flows_through_each_steps_own_logp(mode):
    logp, logp_old, mask = ratio_example()
    J = torch.autograd.functional.jacobian(lambda lp: log_ratio(lp, logp_old, mask, mode), logp)   # [3,2,3,2]
    J = J.reshape(6, 6)
    real = (mask > 0).reshape(6)
    # every real step's log rho depends on its own log-prob with derivative 1, on no other one's
    close(J[real], torch.eye(6, dtype=D)[real])


# ------------------------------------------------------------------------------------------------
# The clipped loss
# ------------------------------------------------------------------------------------------------
def one_step_loss(A, rho, clip_eps=0.2, dual_clip=3.0, ratio="token"):
    logp_old = t([[-1.3]])
    logp = (logp_old + math.log(rho)).requires_grad_()
    loss, stats = policy_loss(logp, logp_old, t([[A]]), t([[1.0]]), ratio, clip_eps, dual_clip)
    loss.backward()
    return loss.item(), logp.grad.item(), stats


# (A, rho, dual_clip) -> loss = -surrogate, d loss / d logp, clipped (|rho - 1| > eps)
CLIP_CASES = {
    "inside range, A > 0":                (1.0, 1.1, 3.0, -1.1, -1.1, 0.0),
    "A > 0, rho above 1+eps: clipped":    (2.0, 1.5, 3.0, -2.4, 0.0, 1.0),   # min(3.0, 1.2*2) = 2.4
    "A > 0, rho below 1-eps: unclipped":  (2.0, 0.5, 3.0, -1.0, -1.0, 1.0),  # min(1.0, 0.8*2) = 1.0
    "A < 0, rho below 1-eps: clipped":    (-1.0, 0.5, 3.0, 0.8, 0.0, 1.0),   # min(-0.5, -0.8) = -0.8
    "A < 0, rho above 1+eps: unclipped":  (-1.0, 1.5, 3.0, 1.5, 1.5, 1.0),   # min(-1.5, -1.2) = -1.5 > 3*A
    "A < 0, rho 2.5 < c: no dual clip":   (-1.0, 2.5, 3.0, 2.5, 2.5, 1.0),   # max(-2.5, -3) = -2.5
    "A < 0, huge rho: dual clip":         (-1.0, 10.0, 3.0, 3.0, 0.0, 1.0),  # max(min(-10, -1.2), 3*A) = -3
    "A < 0, huge rho, dual clip off":     (-1.0, 10.0, 0.0, 10.0, 10.0, 1.0),
    "A = -2, rho 4, dual clip c = 1.5":   (-2.0, 4.0, 1.5, 3.0, 0.0, 1.0),   # max(-8, 1.5*-2) = -3
}


@pytest.mark.parametrize("case", list(CLIP_CASES))
def test_policy_loss_clipping_by_hand(case):
    A, rho, dual, loss, grad, clipped = CLIP_CASES[case]
    for ratio in ("token", "seq", "joint"):        # one step: all three granularities coincide
        got_loss, got_grad, stats = one_step_loss(A, rho, dual_clip=dual, ratio=ratio)
        assert got_loss == pytest.approx(loss, abs=1e-12)
        assert got_grad == pytest.approx(grad, abs=1e-12)
        assert stats["clip_frac"].item() == clipped
        assert stats["approx_kl"].item() == pytest.approx((rho - 1) - math.log(rho), abs=1e-12)


def test_policy_loss_batch_is_token_mean_of_hand_cases():
    cases = list(CLIP_CASES.values())
    cases = [c for c in cases if c[2] == 3.0]      # one dual-clip setting for the whole batch
    A = t([[c[0] for c in cases]])
    rho = t([[c[1] for c in cases]])
    logp_old = torch.full_like(A, -0.9)
    logp = (logp_old + rho.log()).requires_grad_()
    loss, stats = policy_loss(logp, logp_old, A, torch.ones_like(A), "token", 0.2, 3.0)
    loss.backward()
    n = len(cases)
    assert loss.item() == pytest.approx(sum(c[3] for c in cases) / n, abs=1e-12)
    close(logp.grad, t([[c[4] / n for c in cases]]))
    assert stats["clip_frac"].item() == pytest.approx(sum(c[5] for c in cases) / n)
    assert stats["approx_kl"].item() == pytest.approx(sum(r - 1 - math.log(r) for r in rho[0].tolist()) / n)


def test_policy_loss_approx_kl_and_clip_frac_over_real_steps():
    logp, logp_old, mask = ratio_example()
    _, stats = policy_loss(logp, logp_old, t([1.0, -1.0]), mask, "token", clip_eps=0.2)
    real_diffs = [0.1, 0.3, -0.2, 0.5, 0.4]                       # the padding step (7.0) is ignored
    kl = sum(math.exp(d) - 1 - d for d in real_diffs) / 5
    assert stats["approx_kl"].item() == pytest.approx(kl, abs=1e-12)
    # token ratios exp(d): 1.105, 1.35, 0.819, 1.649, 1.492 -> |rho - 1| > 0.2 for 0.3, 0.5, 0.4
    assert stats["clip_frac"].item() == pytest.approx(3 / 5)
    # approx_kl always uses token ratios, whatever the ratio granularity of the loss
    for mode in ("seq", "joint"):
        assert policy_loss(logp, logp_old, t([1.0, -1.0]), mask, mode)[1]["approx_kl"].item() == pytest.approx(kl)


@pytest.mark.parametrize("mode", ["token", "seq", "joint"])
def test_policy_loss_sequence_advantage_broadcasts(mode):
    g = torch.Generator().manual_seed(3)
    T, lengths = 5, [5, 2, 1, 4]
    mask = prefix_mask(lengths, T)
    logp_old = -torch.rand(T, 4, dtype=D, generator=g)
    logp0 = logp_old + 0.3 * torch.randn(T, 4, dtype=D, generator=g)
    A = t([1.5, -0.7, 2.0, -3.0])
    results = []
    for adv in (A, A.expand(T, 4).clone()):
        logp = logp0.clone().requires_grad_()
        loss, stats = policy_loss(logp, logp_old, adv, mask, mode)
        loss.backward()
        results.append((loss.detach(), stats, logp.grad))
    (l1, s1, g1), (l2, s2, g2) = results
    close(l1, l2)
    close(g1, g2)
    for k in s1:
        close(s1[k], s2[k])


@pytest.mark.parametrize("mode", ["token", "seq", "joint"])
@pytest.mark.parametrize("adv_dim", [1, 2])
def test_policy_loss_ignores_padding_garbage(mode, adv_dim):
    g = torch.Generator().manual_seed(4)
    T, lengths = 6, [6, 3, 1, 4]
    B = len(lengths)
    mask = prefix_mask(lengths, T)
    pad = mask == 0
    logp_old = -torch.rand(T, B, dtype=D, generator=g) * mask
    logp_real = (logp_old + 0.4 * torch.randn(T, B, dtype=D, generator=g)) * mask
    adv = torch.randn(B, dtype=D, generator=g) if adv_dim == 1 else torch.randn(T, B, dtype=D, generator=g) * mask

    def run(garbage):
        lp_old, lp, a = logp_old.clone(), logp_real.clone(), adv.clone()
        if garbage:
            lp_old[pad], lp[pad] = -1e6, 1e6
            if adv_dim == 2:
                a[pad] = 1e6
        lp.requires_grad_()
        loss, stats = policy_loss(lp, lp_old, a, mask, mode)
        loss.backward()
        return loss.detach(), stats, lp.grad

    (l0, s0, g0), (l1, s1, g1) = run(False), run(True)
    assert torch.isfinite(l1)
    assert torch.equal(l0, l1)
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    assert torch.equal(g0, g1)
    assert torch.all(g1[pad] == 0)


@pytest.mark.parametrize("mode", ["seq", "joint", "token"])
def test_policy_loss_gradient_unclipped(mode):
    # small log-ratios: every ratio stays inside [1-eps, 1+eps], so nothing is clipped and
    # d loss / d logp[t,b] = -rho * A_b / N (rho: the sequence ratio for seq/joint, the step's for token)
    g = torch.Generator().manual_seed(5)
    T, lengths = 4, [4, 2, 3, 1]
    B = len(lengths)
    mask = prefix_mask(lengths, T)
    N = sum(lengths)
    logp_old = -torch.rand(T, B, dtype=D, generator=g) - 0.1
    diff = (torch.rand(T, B, dtype=D, generator=g) * 0.06 - 0.03) * mask
    logp = (logp_old + diff).requires_grad_()
    A = t([0.7, -1.2, 2.0, -0.4])
    loss, stats = policy_loss(logp, logp_old, A, mask, mode, clip_eps=0.2, dual_clip=3.0)
    loss.backward()
    assert stats["clip_frac"].item() == 0
    if mode == "token":
        rho = diff.exp()
    else:
        seq = diff.sum(0) / (mask.sum(0) if mode == "seq" else 1)
        rho = seq.exp().expand(T, B)
    close(logp.grad, -rho * A * mask / N)
    # the loss value too: -token-mean of rho * A
    assert loss.item() == pytest.approx(-(rho * A * mask).sum().item() / N, abs=1e-12)


def test_policy_loss_on_policy_granularities_agree():
    # the first (or only) on-policy minibatch: logp_old == logp, every ratio is exactly 1, nothing is
    # clipped, and token, seq and joint give the same loss and the same gradient -A * mask / N. The
    # granularity only matters once the policy has moved (a second minibatch or epoch). This is why
    # llm_demo.py's default (one minibatch) trains identically with --ratio token and --ratio seq.
    g = torch.Generator().manual_seed(7)
    T, lengths = 5, [5, 3, 1, 4]
    mask = prefix_mask(lengths, T)
    logp0 = -torch.rand(T, len(lengths), dtype=D, generator=g) - 0.1
    A = t([1.3, -0.6, 0.2, -2.0])
    grads, losses = [], []
    for mode in ("token", "seq", "joint"):
        logp = logp0.clone().requires_grad_()
        loss, stats = policy_loss(logp, logp.detach(), A, mask, mode)
        loss.backward()
        assert stats["clip_frac"].item() == 0 and stats["approx_kl"].item() == 0
        grads.append(logp.grad)
        losses.append(loss.item())
    close(grads[0], -A * mask / sum(lengths))
    for grad, loss in zip(grads[1:], losses[1:]):
        assert torch.equal(grad, grads[0]) and loss == losses[0]


def test_masked_mean_by_hand():
    close(masked_mean(t([[1.0, 2.0], [3.0, 1e9]]), t([[1.0, 1.0], [1.0, 0.0]])), 2.0)
    close(masked_mean(t([[5.0]]), t([[0.0]])), 0.0)     # no real step: 0, not NaN


# ------------------------------------------------------------------------------------------------
# value.py
# ------------------------------------------------------------------------------------------------
def test_return_scaler_chunks_equal_concatenation():
    g = torch.Generator().manual_seed(6)
    chunks = [torch.randn(50, generator=g) * 3 + 10, torch.randn(30, generator=g) * 5 - 2,
              torch.tensor([100.0]), torch.randn(7, 3, generator=g)]
    scaler = ReturnScaler()
    for k, c in enumerate(chunks):
        scaler.update(c)
        seen = torch.cat([x.reshape(-1) for x in chunks[:k + 1]]).double()
        assert scaler.count.item() == seen.numel()
        assert scaler.mean.item() == pytest.approx(seen.mean().item(), rel=1e-5)
        assert scaler.var.item() == pytest.approx(seen.var(unbiased=False).item(), rel=1e-5)
        assert scaler.std.item() == pytest.approx(seen.std(unbiased=False).item(), rel=1e-5)


def test_return_scaler_starts_as_identity():
    s = ReturnScaler()
    assert s.mean.item() == 0 and s.std.item() == 1 and s.count.item() == 0


def test_prompt_value_success_is_probability_trained_with_bce():
    torch.manual_seed(0)
    v = PromptValue(4, hidden=16, target="success")
    s0 = torch.randn(32, 4) * 3
    y = (torch.rand(32) > 0.5).float()
    p = v(s0)
    assert p.shape == (32,)
    assert torch.all((p > 0) & (p < 1))
    loss = v.loss(s0, y)
    assert loss.shape == (32,)
    close(loss, -(y * p.log() + (1 - y) * (1 - p).log()), rtol=1e-5, atol=1e-6)
    close(loss, F.binary_cross_entropy(p, y, reduction="none"), rtol=1e-5, atol=1e-6)


def test_prompt_value_return_is_in_return_units():
    torch.manual_seed(0)
    v = PromptValue(4, hidden=16, target="return")
    v.scaler.update(torch.randn(1000) * 20 + 100)                    # returns around 100 +- 20
    mean, std = v.scaler.mean.item(), v.scaler.std.item()
    assert mean == pytest.approx(100, abs=3) and std == pytest.approx(20, rel=0.1)
    s0 = torch.randn(16, 4)
    with torch.no_grad():
        raw = v.net(s0).squeeze(-1)
        V = v(s0)
    assert V.shape == (16,)
    close(V, raw * std + mean, rtol=1e-5, atol=1e-4)
    # the regression is in standardised units: loss = ((V - R) / std)^2, zero at R = V
    R = torch.randn(16) * 20 + 100
    close(v.loss(s0, R), ((V - R) / std) ** 2, rtol=1e-4, atol=1e-5)
    close(v.loss(s0, V), torch.zeros(16), atol=1e-8, rtol=0)


def test_step_value_shapes_and_units():
    torch.manual_seed(0)
    v = StepValue(3, hidden=16)
    v.scaler.update(torch.randn(500) * 5 - 50)
    std = v.scaler.std.item()
    obs, returns = torch.randn(7, 4, 3), torch.randn(7, 4) * 5 - 50
    V = v(obs)
    loss = v.loss(obs, returns)
    assert V.shape == (7, 4) and loss.shape == (7, 4)
    close(loss, ((V - returns) / std) ** 2, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# The actor
# ------------------------------------------------------------------------------------------------
def test_actor_discrete_is_categorical():
    torch.manual_seed(0)
    actor = Actor(4, gym.spaces.Discrete(3), hidden=16)
    obs = torch.randn(10, 4)
    with torch.no_grad():
        logits = actor.net(obs)
    ref = torch.distributions.Categorical(logits=logits)
    close(ref.probs, torch.full((10, 3), 1 / 3), atol=0.02, rtol=0)   # small last layer: near-uniform start
    action, logp = actor.act(obs)
    assert action.shape == (10,) and logp.shape == (10,)
    assert action.dtype == torch.long and ((action >= 0) & (action < 3)).all()
    close(logp, ref.log_prob(action), rtol=1e-5, atol=1e-6)
    lp, ent = actor.logp_entropy(obs[None].expand(2, 10, 4), action[None].expand(2, 10))
    assert lp.shape == (2, 10) and ent.shape == (2, 10)
    close(lp[0], logp, rtol=1e-5, atol=1e-6)
    close(lp[1], logp, rtol=1e-5, atol=1e-6)
    close(ent[0], ref.entropy(), rtol=1e-5, atol=1e-6)
    # every action's log-prob: exp sums to one
    all_lp = torch.stack([actor.logp_entropy(obs[None], torch.full((1, 10), a))[0][0] for a in range(3)], -1)
    close(all_lp.exp().sum(-1), torch.ones(10), rtol=1e-5, atol=1e-6)


def test_actor_discrete_samples_follow_the_probabilities():
    torch.manual_seed(0)
    actor = Actor(2, gym.spaces.Discrete(3), hidden=8)
    with torch.no_grad():
        actor.net[-1].bias.copy_(torch.tensor([2.0, 0.0, -1.0]))        # skewed logits
    obs = torch.zeros(20000, 2)
    action, logp = actor.act(obs)
    probs = torch.softmax(actor.net(obs[:1]).detach(), -1)[0]
    freq = torch.bincount(action, minlength=3).float() / len(action)
    close(freq, probs, atol=0.015, rtol=0)
    close(logp, probs.log()[action], rtol=1e-5, atol=1e-6)


def test_actor_box_is_diagonal_gaussian():
    torch.manual_seed(0)
    actor = Actor(3, gym.spaces.Box(-2.0, 2.0, shape=(2,)), hidden=16)
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([math.log(0.5), 0.0]))
    obs = torch.randn(10, 3)
    action, logp = actor.act(obs)
    assert action.shape == (10, 2) and logp.shape == (10,)
    mu = actor.net(obs).detach()
    ref = torch.distributions.Independent(torch.distributions.Normal(mu, torch.tensor([0.5, 1.0])), 1)
    close(logp, ref.log_prob(action), rtol=1e-5, atol=1e-5)
    lp, ent = actor.logp_entropy(obs[None], action[None])
    assert lp.shape == (1, 10) and ent.shape == (1, 10)
    close(lp[0], logp, rtol=1e-5, atol=1e-6)
    close(ent[0], ref.entropy(), rtol=1e-5, atol=1e-5)
    # by hand: sum over the action dims of -(a - mu)^2 / (2 std^2) - log std - log(2 pi) / 2
    std = torch.tensor([0.5, 1.0])
    by_hand = (-0.5 * ((action - mu) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(1)
    close(logp, by_hand, rtol=1e-5, atol=1e-5)
    # samples: mean mu, std exp(log_std), per dimension (and not clipped to the action bounds)
    many, _ = actor.act(obs[:1].expand(20000, 3))
    close(many.mean(0), mu[0], atol=0.03, rtol=0)
    close(many.std(0), std, atol=0.03, rtol=0)
    # gradients reach log_std and the network
    actor.logp_entropy(obs[None], action[None])[0].sum().backward()
    assert actor.log_std.grad is not None and torch.isfinite(actor.log_std.grad).all()
    assert actor.net[0].weight.grad is not None


# ------------------------------------------------------------------------------------------------
# Non-finite numbers: the log-ratio's clamp, standardising advantages without spread
# ------------------------------------------------------------------------------------------------
def one_step_float32(diff, A, dual_clip=3.0, ratio="token", steps=1):
    """An episode of `steps` steps, each with log pi - log pi_old = diff, in float32 (the trainers' dtype)."""
    logp_old = torch.full((steps, 1), -1.3)
    logp = (logp_old + diff).requires_grad_()
    loss, _ = policy_loss(logp, logp_old, torch.tensor([A]), torch.ones(steps, 1), ratio, 0.2, dual_clip)
    loss.backward()
    return loss.item(), logp.grad


# (log-ratio, A, dual clip) -> loss: beyond +-20 the ratio is e^+-20; its gradient is 0
HUGE_RATIO_CASES = {
    "the issue's step: 89, A = 1 (clipped at 1 + eps)":      (89.0, 1.0, 3.0, -1.2),
    "89, A = -1: the dual clip bounds it at c * A":          (89.0, -1.0, 3.0, 3.0),
    "89, A = -1, no dual clip: the ratio saturates at e^20": (89.0, -1.0, 0.0, math.exp(20)),
    "1000, A = 1":                                           (1000.0, 1.0, 3.0, -1.2),
    "-1000, A = 1: saturates at e^-20":                      (-1000.0, 1.0, 3.0, -math.exp(-20)),
    "-1000, A = -1 (clipped at 1 - eps)":                    (-1000.0, -1.0, 3.0, 0.8),
}


@pytest.mark.parametrize("case", list(HUGE_RATIO_CASES))
def test_policy_loss_clamps_the_log_ratio_to_20_before_exp(case):
    # unclamped, exp(89) is inf in float32 and the backward pass of the min gives 0 * inf = NaN
    diff, A, dual, loss = HUGE_RATIO_CASES[case]
    got_loss, grad = one_step_float32(diff, A, dual)
    assert got_loss == pytest.approx(loss, rel=1e-6)
    assert torch.equal(grad, torch.zeros_like(grad))   # finite: a saturated ratio passes no gradient


@pytest.mark.parametrize("ratio, steps", [("joint", 4), ("joint", 500), ("seq", 4)])
@pytest.mark.parametrize("A", [1.0, -1.0])
@pytest.mark.parametrize("dual_clip", [3.0, 0.0])
def test_sequence_ratios_beyond_20_give_finite_zero_gradients(ratio, steps, A, dual_clip):
    # joint: 4 steps of 25 sum to a log-ratio of 100 (exp: inf in float32); 500 steps of 0.2 (each
    # step unremarkable) sum to 100 too; seq: a mean of 100
    diff = 0.2 if steps == 500 else 25.0 if ratio == "joint" else 100.0
    loss, grad = one_step_float32(diff, A, dual_clip, ratio, steps)
    expected = (-1.2 if A > 0 else 3.0) if A > 0 or dual_clip else math.exp(20)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_policy_loss_just_inside_20_is_unclamped():
    # A < 0 without dual clip: the surrogate is rho * A, its gradient -rho * A, at rho = e^19.9 as ever
    loss, grad, _ = one_step_loss(-1.0, math.exp(19.9), dual_clip=0.0)
    assert loss == pytest.approx(math.exp(19.9), rel=1e-12)
    assert grad == pytest.approx(math.exp(19.9), rel=1e-12)


def test_policy_loss_float64_overflow_is_clamped_too():
    logp_old = t([[-1.3]])
    logp = (logp_old + 800.0).requires_grad_()     # exp(800) is inf even in float64
    loss, _ = policy_loss(logp, logp_old, t([[1.0]]), t([[1.0]]), "token")
    loss.backward()
    assert loss.item() == pytest.approx(-1.2) and logp.grad.item() == 0.0


@pytest.mark.parametrize("A, T", [(-0.731, 37), (-3.211, 7), (-3.211, 13), (5.5, 37), (-0.731, 10)])
def test_standardize_one_episode_keeps_its_advantage(A, T):
    # --num-episodes 1: one sequence advantage on every step; its std is rounding noise (~1e-7), which
    # used to turn -0.731 into +0.856, -3.211 into -+0.960 and 5.5 into 0
    adv = torch.full((T, 1), A)
    out = standardize(adv, torch.ones(T, 1))
    assert torch.equal(out, adv)
    assert out.unique().item() == torch.tensor(A).item()
    # padding after the episode's end changes nothing
    mask = torch.cat([torch.ones(T, 1), torch.zeros(5, 1)])
    padded = torch.cat([adv, torch.full((5, 1), 9.0)])
    assert torch.equal(standardize(padded, mask)[:T], adv)


@pytest.mark.parametrize("A, lengths", [(-0.731, [10, 10, 10, 10]), (0.1, [37, 20, 5]), (0.3, [3, 7]),
                                        (1.0 / 3, [10, 10, 10, 10]), (1.0, [4, 4]), (0.0, [5, 2])])
def test_standardize_all_equal_batch_is_exactly_zero(A, lengths):
    # several episodes, all with the same advantage (reinforce on a batch of equal outcomes): none did
    # better than the others; rounding noise used to come out as +-0.43 .. +-0.86
    T = max(lengths)
    mask = prefix_mask(lengths, T).float()
    out = standardize(torch.full((T, len(lengths)), A), mask)
    assert torch.equal(out, torch.zeros_like(out))


def test_standardize_with_spread_is_unchanged():
    # an ordinary batch: (A - mean) / (std + 1e-8) over the real steps, bit for bit
    g = torch.Generator().manual_seed(11)
    lengths = [6, 3, 1, 4]
    mask = prefix_mask(lengths, 6).float()
    for adv in (torch.randn(4, generator=g).expand(6, 4), torch.randn(6, 4, generator=g)):
        mean = masked_mean(adv, mask)
        expected = (adv - mean) / (masked_mean((adv - mean) ** 2, mask).sqrt() + 1e-8)
        assert torch.equal(standardize(adv, mask), expected)
    # one episode whose per-step advantages vary (ppo's GAE) is standardised as usual
    close(standardize(t([[1.0], [2.0], [3.0]]), t([[1.0], [1.0], [1.0]])),
          [[-math.sqrt(1.5)], [0.0], [math.sqrt(1.5)]], atol=1e-7, rtol=0)
