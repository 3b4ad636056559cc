"""The exercises of notebooks/04_probes_and_exercises.ipynb: each solution (notebooks/solutions/) meets its
checker's pass mark (tests/probes.py), and each checker misses a wrong answer -- a checker that cannot fail
would mark nothing. The functions are called directly, not through the notebook; a few seconds each.
"""
import json
import pathlib
import sys

import pytest
import torch

import objective
import probes
import sppo

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))   # notebooks/solutions/, as the notebook imports it

from solutions.critic_effort import CONFIGS, verdict  # noqa: E402
from solutions.gae_by_hand import gae_by_hand  # noqa: E402
from solutions.gradient_variance import gradient_variance  # noqa: E402
from solutions.silent_bug import BUG, fixed_update  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Small MLPs run fastest on one thread (as in the notebook); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------
# Exercise 1: the critic settings, and the verdict on their runs
# ------------------------------------------------------------------------------------------------
def test_critic_configs_solution_passes():
    assert probes.check_critic_configs(CONFIGS)["passed"]


@pytest.mark.parametrize("wrong", [
    {"frozen": {}},                                        # the student's starting point: nothing frozen
    {"frozen": {"critic_lr": 1e-4}},                       # a slower critic still moves
    {"warm-up": {"critic_warmup": 1}},                     # one update, not two
    {"warm-up": {"critic_warmup": 2, "critic_lr": 1e-8}},  # the warm-up must train the critic
    {"frozen": {"critic_lr": 1e-8, "critic_warmup": 2}},   # frozen, but the actor must learn from the start
], ids=["nothing-frozen", "slow-not-frozen", "warmup-1", "warmup-frozen", "frozen-warmup"])
def test_critic_configs_checker_fails_wrong_settings(wrong):
    assert not probes.check_critic_configs({**CONFIGS, **wrong})["passed"]


MEASURED = {"default": [1.0, 0.84, 0.89, 0.77, 0.97, 0.72], "frozen": [0.94, 1.0, 0.55, 0.77, 0.88, 0.97],
            "warm-up": [0.97, 0.75, 0.39, 0.89, 0.94, 0.91]}   # the shape of the notebook's run: six seeds per setting


@pytest.mark.parametrize("finals", [MEASURED, *probes.VERDICT_CASES])
def test_verdict_solution_passes(finals):
    assert probes.check_critic_verdict(verdict, finals)["passed"]


def median_verdict(finals):
    """The best median instead of the best mean."""
    import statistics
    best, second = sorted(finals, key=lambda k: -statistics.median(finals[k]))[:2]
    return best, True


def no_noise_verdict(finals):
    """Any lead counts as clear."""
    import statistics
    return max(finals, key=lambda k: statistics.mean(finals[k])), True


def standard_deviation_verdict(finals):
    """Clear against 2 standard deviations of the seeds instead of 2 standard errors of the difference."""
    import statistics
    mean = {k: statistics.mean(v) for k, v in finals.items()}
    best, second = sorted(finals, key=mean.get, reverse=True)[:2]
    return best, mean[best] - mean[second] > 2 * statistics.stdev(finals[best])


@pytest.mark.parametrize("wrong", [lambda finals: ("default", False), lambda finals: ("frozen", True), median_verdict,
                                   no_noise_verdict, standard_deviation_verdict, lambda finals: None],
                         ids=["always-default", "always-frozen-clear", "median", "no-noise", "std-not-se", "unfinished"])
def test_verdict_checker_fails_wrong_verdicts(wrong):
    assert not probes.check_critic_verdict(wrong, MEASURED)["passed"]


# ------------------------------------------------------------------------------------------------
# Exercise 2: GAE by hand
# ------------------------------------------------------------------------------------------------
def test_gae_solution_matches_objective_exactly():
    result = probes.check_gae(gae_by_hand)
    assert result["passed"] and result["max_error"] < 1e-12, result


def test_gae_solution_on_objectives_worked_example():
    """objective.gae_advantage's docstring example, and the two ends of lambda: one-step TD errors and R - V(s_t)."""
    rewards, values = [0.0, 0.0, 1.0], [0.5, 0.6, 0.9]
    assert gae_by_hand(rewards, values, 0.0, 1.0, 1.0) == pytest.approx([0.5, 0.4, 0.1])
    assert gae_by_hand(rewards, values, 0.0, 1.0, 0.0) == pytest.approx([0.1, 0.3, 0.1])


def sign_flipped(rewards, values, last_value, gamma, lam):
    return [-a for a in gae_by_hand(rewards, values, last_value, gamma, lam)]


def lambda_ignored(rewards, values, last_value, gamma, lam):
    return gae_by_hand(rewards, values, last_value, gamma, 1.0)


def no_bootstrap(rewards, values, last_value, gamma, lam):
    return gae_by_hand(rewards, values, 0.0, gamma, lam)


def lambda_without_gamma(rewards, values, last_value, gamma, lam):
    """A_t = delta_t + lam A_{t+1}: the discount left out of the trace."""
    advantages, following = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (values[t + 1] if t + 1 < len(rewards) else last_value) - values[t]
        following = delta + lam * following
        advantages[t] = following
    return advantages


def forwards(rewards, values, last_value, gamma, lam):
    """The recursion run from the front: A_t = delta_t + gamma lam A_{t-1}."""
    return list(reversed(gae_by_hand(list(reversed(rewards)), list(reversed(values)), last_value, gamma, lam)))


@pytest.mark.parametrize("wrong", [sign_flipped, lambda_ignored, no_bootstrap, lambda_without_gamma, forwards,
                                   lambda *args: None])
def test_gae_checker_fails_wrong_gae(wrong):
    assert not probes.check_gae(wrong)["passed"]


# ------------------------------------------------------------------------------------------------
# Exercise 3: the variance of the policy gradient with a 0/1 outcome
# ------------------------------------------------------------------------------------------------
def test_variance_solution_passes():
    result = probes.check_variance(gradient_variance)
    assert result["passed"], result["rows"]


def test_sampled_gradients_are_the_score_times_the_advantage():
    """sampled_gradients differentiates objective.policy_loss: its terms must be (a - q) A exactly, so
    their mean is the true gradient q (1 - q) (w1 - w0) whatever the (action-independent) baseline."""
    q, w0, w1 = 0.3, 0.1, 0.9
    g = probes.sampled_gradients(q, w0, w1, "oracle", batch_size=1, batches=100_000, seed=1)
    assert set(torch.round(g, decimals=6).tolist()) <= {round(v, 6) for v in
                                                         ((1 - q) * (1 - 0.34), (1 - q) * (0 - 0.34), -q * (1 - 0.34), -q * (0 - 0.34))}
    assert float(g.mean()) == pytest.approx(q * (1 - q) * (w1 - w0), abs=4 * float(g.std()) / 100_000 ** 0.5)


def swapped(no, oracle):
    """A variance function that answers `no`'s formula where the baseline is `oracle`."""
    def variance(q, w0, w1, baseline, batch_size):
        return gradient_variance(q, w0, w1, no if baseline == oracle else baseline, batch_size)
    return variance


def batch_mean_without_shrink(q, w0, w1, baseline, batch_size):
    """The leave-one-out variance, without the (1 - 1/N)^2 of the episode's own outcome inside the mean."""
    v = gradient_variance(q, w0, w1, baseline, batch_size)
    return v / (1 - 1 / batch_size) ** 2 if baseline == "batch_mean" else v


def batch_mean_as_oracle_over_n(q, w0, w1, baseline, batch_size):
    """The batch mean's noise left out: the oracle's variance, shrunk."""
    if baseline == "batch_mean":
        return (1 - 1 / batch_size) ** 2 * gradient_variance(q, w0, w1, "oracle", batch_size)
    return gradient_variance(q, w0, w1, baseline, batch_size)


@pytest.mark.parametrize("wrong", [swapped("none", "oracle"), swapped("oracle", "batch_mean"), swapped("oracle", "none"),
                                   batch_mean_without_shrink, batch_mean_as_oracle_over_n, lambda *args: None],
                         ids=["no-baseline-as-oracle", "oracle-as-batch-mean", "oracle-as-none", "no-shrink",
                              "no-baseline-noise", "unfinished"])
def test_variance_checker_fails_wrong_formulas(wrong):
    assert not probes.check_variance(wrong, batches=20_000)["passed"]


# ------------------------------------------------------------------------------------------------
# Exercise 4: the silent bug
# ------------------------------------------------------------------------------------------------
def test_bug_fix_solution_passes_where_the_suspect_fails():
    result = probes.check_bug_fix(fixed_update)
    assert result["passed"], result
    assert result["suspect"]["explained_var"] > result["fixed"]["explained_var"] + 0.3   # the leak looks healthier
    assert result["suspect"]["value_loss"] < result["fixed"]["value_loss"] - 0.1
    assert "s0" in BUG


def sign_flipped_update(args, env, actor, critic, optimizer, seed, train_actor=True):
    """A fix that breaks something else: the critic reads s0, but A = V - R."""
    real = objective.sppo_advantage
    objective.sppo_advantage = lambda outcome, value: value - outcome
    try:
        return fixed_update(args, env, actor, critic, optimizer, seed, train_actor)
    finally:
        objective.sppo_advantage = real


def unfinished(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("wrong", [probes.suspect_update, sppo.update, sign_flipped_update, unfinished],
                         ids=["the-suspect-itself", "sppo.update-itself", "sign-flipped", "unfinished"])
def test_bug_fix_checker_fails_wrong_fixes(wrong):
    assert not probes.check_bug_fix(wrong)["passed"]


# ------------------------------------------------------------------------------------------------
# The notebook as committed runs with the solutions switched in, from hidden cells
# ------------------------------------------------------------------------------------------------
def test_notebook_loads_each_solution_from_a_hidden_cell():
    cells = json.loads((NOTEBOOKS / "04_probes_and_exercises.ipynb").read_text())["cells"]
    source = ["".join(c["source"]) for c in cells]
    assert any("USE_SOLUTIONS = True" in s for s in source)
    for module in ("critic_effort", "gae_by_hand", "gradient_variance", "silent_bug"):
        loading = [c for c, s in zip(cells, source) if f"from solutions.{module} import" in s]
        assert loading and all(c["metadata"].get("jupyter", {}).get("source_hidden") for c in loading), module
        assert all("if USE_SOLUTIONS:" in "".join(c["source"]) for c in loading)
