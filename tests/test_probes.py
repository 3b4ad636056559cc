"""The probe ladder (tests/probes.py): each probe meets its pass mark on this code, and misses it when a
known bug is planted -- so a probe that passes means something.

A planted bug is a monkeypatch of the real function it would live in (objective.py's estimators, value.py's
critic, envs.rollout's batch, sppo.update's no_grad block); pytest undoes it after the test. Every probe
runs in about a second on one core (delayed_credit: a few).
"""
import contextlib
import dataclasses

import pytest
import torch

import envs
import objective
import probes
import sppo
import value


@pytest.fixture(autouse=True)
def one_thread():
    """Small MLPs run fastest on one thread (and the numbers below were measured so); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------
# The bugs, each planted where it would live in the code
# ------------------------------------------------------------------------------------------------
def rollout_returning(change):
    """envs.rollout, with `change(batch) -> batch` applied to every batch it returns."""
    real = envs.rollout

    def planted(*args, **kwargs):
        return change(real(*args, **kwargs))
    return planted


def mask_ignores_episode_ends(mp):
    """The step mask is 1 on every step the rollout took: the next episode's steps (after the autoreset)
    count as this episode's -- its return, its loss, its advantage."""
    mp.setattr(envs, "rollout", rollout_returning(lambda b: dataclasses.replace(b, step_mask=torch.ones_like(b.step_mask))))


def mask_drops_the_last_step(mp):
    """Off by one: the step an episode ends on (where a 0/1 outcome is paid) is marked as padding."""
    def change(b):
        mask = b.step_mask.clone()
        mask[mask.sum(0).long() - 1, torch.arange(mask.shape[1])] = 0
        return dataclasses.replace(b, step_mask=mask)
    mp.setattr(envs, "rollout", rollout_returning(change))


def critic_never_learns(mp):
    """The value loss never reaches the critic's weights (left out of the sum, or the critic left out of
    the optimizer): V(s0) stays where it started."""
    real = value.PromptValue.loss
    mp.setattr(value.PromptValue, "loss", lambda self, s0, outcome: 0 * real(self, s0, outcome))


def value_targets_misaligned(mp):
    """The critic's targets are another episode's outcomes (an index or a shuffle applied to one side only)."""
    real = value.PromptValue.loss
    mp.setattr(value.PromptValue, "loss",
               lambda self, s0, outcome: real(self, s0, outcome[torch.randperm(len(outcome))]))


class TorchWithGradEverywhere:
    """torch, except that `with torch.no_grad():` does nothing."""
    no_grad = contextlib.nullcontext

    def __getattr__(self, name):
        return getattr(torch, name)


def baseline_not_detached(mp):
    """The advantage R - V(s0) is computed with the gradient on (sppo.update without its no_grad block):
    the policy loss then also trains the critic, and pushes V(s0) down. (One pass in one minibatch, as in
    context_outcome, uses that graph once; with more, backward would find it freed and raise.)"""
    mp.setattr(sppo, "torch", TorchWithGradEverywhere())


def critic_reads_the_action(mp):
    """The critic reads the observation after the episode -- which shows its action (LLM: a critic that
    reads the response) -- instead of s0: it learns Q(s0, a) and the advantage loses the action's credit."""
    mp.setattr(envs, "rollout", rollout_returning(lambda b: dataclasses.replace(b, s0=b.final_obs)))


def advantage_sign_flipped(mp):
    """A = V(s0) - R."""
    mp.setattr(objective, "sppo_advantage", lambda outcome, prompt_value: prompt_value - outcome)


def outcome_discounted(mp):
    """The sequence outcome is a discounted return, sum_t 0.97^t r_t: a late reward is worth less, so
    SPPO's credit fades with the delay as GAE's does."""
    def discounted_returns(self):
        discount = 0.97 ** torch.arange(self.rewards.shape[0], dtype=self.rewards.dtype)[:, None]
        return (discount * self.rewards * self.step_mask).sum(0)
    mp.setattr(envs.Episodes, "returns", property(discounted_returns))


def gae_lambda_ignored(mp):
    """--gae-lambda never reaches GAE (Baselines' default lam = 1.0): token-level PPO runs Monte-Carlo
    advantages, and nothing fades."""
    real = objective.gae_advantage
    mp.setattr(objective, "gae_advantage",
               lambda rewards, values, step_mask, last_value, gamma, lam: real(rewards, values, step_mask, last_value, gamma, 1.0))


def grpo_normalises_the_whole_batch(mp):
    """GRPO's mean and std over the whole batch instead of each group of G (group_size lost on the way)."""
    real = objective.grpo_advantage
    mp.setattr(objective, "grpo_advantage", lambda outcome, group_size, eps=1e-6: real(outcome, len(outcome), eps))


def groups_not_consecutive(mp):
    """The batch's episodes out of group order (LLM: prompts.repeat(G) where repeat_interleave(G) was
    meant): each 'group' of G consecutive episodes mixes contexts."""
    def shuffle(b):
        order = torch.randperm(b.step_mask.shape[1], generator=torch.Generator().manual_seed(0))
        return envs.Episodes(**{f.name: None if getattr(b, f.name) is None else
                                getattr(b, f.name)[:, order] if getattr(b, f.name).dim() >= 2 and f.name not in ("s0", "final_obs")
                                else getattr(b, f.name)[order] for f in dataclasses.fields(b)})
    mp.setattr(envs, "rollout", rollout_returning(shuffle))


# ------------------------------------------------------------------------------------------------
# Each probe passes on this code ...
# ------------------------------------------------------------------------------------------------
PROBES = {"constant_outcome": {}, "context_outcome": {}, "action_outcome": {}, "delayed_credit": {}, "difficulty": {}}


@pytest.mark.parametrize("name", PROBES)
def test_probe_meets_its_pass_mark(name):
    result = getattr(probes, name)(**PROBES[name])
    assert result["passed"], result


# ... and misses it, with the symptom the bug predicts, when the bug is planted.
# (bug, the probe that catches it, its arguments, the symptom)
PLANTED = [
    (mask_ignores_episode_ends, "constant_outcome", {},
     lambda r: max(r["value"]) > 1.3 and r["mean_abs_adv"] > 0.1),              # the next episodes' rewards counted
    (mask_drops_the_last_step, "constant_outcome", {},
     lambda r: max(r["value"]) < 0.1),                                         # the outcome is never seen
    (critic_never_learns, "context_outcome", {},
     lambda r: max(abs(m) for m in r["mean_adv"]) > 0.3),                       # A = R - 0.5: the context's luck
    (value_targets_misaligned, "context_outcome", {},
     lambda r: max(r["value"]) - min(r["value"]) < 0.1),                        # V learns the average, not E[R | s0]
    (baseline_not_detached, "context_outcome", {},
     lambda r: all(v < p - 0.04 for v, p in zip(r["value"][1:], r["target"][1:]))),   # V pushed down
    (critic_reads_the_action, "action_outcome", {},
     lambda r: abs(r["credit"]) < 0.2 and r["explained_var"] > 0.4),            # A collapses, V looks good
    (advantage_sign_flipped, "action_outcome", {},
     lambda r: r["credit"] < -0.6 and max(r["p_right"]) < 0.1),                 # the wrong action learnt
    (outcome_discounted, "delayed_credit", {"warmup": 1},
     lambda r: r["sppo_credit"][-1] < 0.2),                                     # 0.97^64 = 0.14
    (gae_lambda_ignored, "delayed_credit", {"warmup": 1},
     lambda r: min(r["gae_credit"]) > 0.99),                                    # lambda = 1: nothing fades
    (grpo_normalises_the_whole_batch, "difficulty", {},
     lambda r: r["grpo_mean_adv"][0] > 0.5 and r["grpo_mean_adv"][2] < -0.5),   # A says which context, not which action
    (groups_not_consecutive, "difficulty", {},
     lambda r: max(abs(m) for m in r["grpo_mean_adv"]) > 0.3),
]


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")
@pytest.mark.parametrize("plant, name, kwargs, symptom", PLANTED, ids=[p[0].__name__ for p in PLANTED])
def test_probe_catches_a_planted_bug(plant, name, kwargs, symptom, monkeypatch):
    plant(monkeypatch)
    result = getattr(probes, name)(**kwargs)
    assert not result["passed"], f"{name} missed the planted bug {plant.__name__}: {result}"
    assert symptom(result), result


def test_probe_env_follows_the_rollout_conventions():
    """ProbeEnv as envs.rollout reads it: one context per group, R on the last real step, a mask that ends
    with the episode, s0 that shows the context only."""
    env = probes.ProbeEnv(12, win=[[0.0, 1.0], [1.0, 1.0]], lengths=(2, 5), seed=3)
    actor = sppo.Actor(4, env.single_action_space)
    batch = envs.rollout(env, actor.act, group_size=3, seed=7)
    context = probes.context_of(batch, env)
    assert (context.view(4, 3) == context.view(4, 3)[:, :1]).all()
    assert batch.lengths.tolist() == [(2, 5)[c] for c in context.tolist()]
    assert torch.equal(batch.success, batch.returns.bool())
    assert torch.equal(batch.success, (context == 1) | (batch.actions[0] == 1))
    assert (batch.s0[:, 2:] == 0).all() and (batch.obs[1, :, 3] != 0).all()   # t = 0 and a0 unseen at s0; seen after
    hidden = probes.ProbeEnv(4, win=[[0.0, 1.0]], lengths=(3,), show_first_action=False)
    assert (envs.rollout(hidden, sppo.Actor(3, hidden.single_action_space).act, seed=0).obs[..., 2] == 0).all()


# ------------------------------------------------------------------------------------------------
# notebooks/METRICS.md: every logged column of both trainers, and nothing else
# ------------------------------------------------------------------------------------------------
def documented_columns() -> dict[str, list[str]]:
    """The column names in METRICS.md's tables (rows that start with | `name` |), per trainer section."""
    import os
    text = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks", "METRICS.md")).read()
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line.split()[1]
            sections[current] = []
        elif line.startswith("| `") and current is not None:
            sections[current].append(line.split("`")[1])
    return sections


def test_metrics_md_documents_every_progress_csv_column():
    import llm_demo
    documented = documented_columns()
    for trainer, columns in (("sppo.py", sppo.COLUMNS), ("llm_demo.py", llm_demo.COLUMNS)):
        missing = [c for c in columns if c not in documented.get(trainer, [])]
        assert not missing, f"notebooks/METRICS.md lacks {trainer}'s column(s) {missing}: add a row to its tables"
        stale = [c for c in documented[trainer] if c not in columns]
        assert not stale, f"notebooks/METRICS.md documents {stale} under {trainer}, which no longer logs them"
        assert len(documented[trainer]) == len(set(documented[trainer])), "a column documented twice"
