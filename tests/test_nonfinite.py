"""Nothing silent: a non-finite number stops both trainers at once.

A NaN or an inf in a loss (before backward), a gradient norm (before the optimizer step), a weight
(after it), or an action or log-prob of the rollout ends the run with one line on stderr naming the
update (LLM: step) and the quantity, exit code 3, no traceback; model.pt stays the last finite
checkpoint and progress.csv keeps its rows, none of the bad update. The non-finite values are
injected at a chosen update (a wrapped function), so each test runs a few tiny updates.
Standardising a single episode's advantage (--num-episodes 1) leaves it as it is.
"""
import csv
import os
import subprocess
import sys

import pytest
import torch

import envs
import llm_demo
import llm_models
import sppo
from tiny_lm import make_tiny_lm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = {"wall_time", "steps_per_s", "gen_tokens_per_s", "peak_mem_gb"}
# one clipped step per update: the n-th call of the loss is the n-th update
CARTPOLE = ["--env", "CartPole-v1", "--num-episodes", 4, "--epochs", 1, "--minibatches", 1, "--horizon", 30,
            "--total-steps", 100_000]


def run_sppo(tmp_path, monkeypatch, *args):
    monkeypatch.chdir(tmp_path)
    return sppo.main([str(a) for a in args])


def rows(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def nth_call(n, change):
    """A wrapper for `fn` that applies `change` to its result on the n-th call (and after it)."""
    def wrap(fn):
        calls = []

        def wrapped(*args, **kwargs):
            calls.append(1)
            out = fn(*args, **kwargs)
            return change(out) if len(calls) >= n else out
        return wrapped
    return wrap


def nan_loss(out):
    loss, stats = out
    return loss * float("nan"), stats


def all_finite(state):
    return all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())


# ------------------------------------------------------------------------------------------------
# sppo.py
# ------------------------------------------------------------------------------------------------
def test_the_issues_pendulum_run_stops_at_update_1(tmp_path):
    # lr 10 without clipping: NaN from the first update; it used to train NaN to the end, exit 0 and save NaN
    proc = subprocess.run([sys.executable, os.path.join(REPO, "sppo.py"), "--env", "Pendulum-v1", "--lr", "10",
                           "--critic-lr", "10", "--max-grad-norm", "0", "--total-steps", "20000", "--run-name", "p"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("error: update 1: the policy loss is NaN: training diverged; nothing was saved")
    assert "--lr" in err and "--max-grad-norm 0.5" in err
    assert not os.path.exists(tmp_path / "runs/p/model.pt")
    assert rows(tmp_path / "runs/p/progress.csv") == []


def test_a_nan_loss_keeps_the_last_finite_checkpoint_and_its_rows(tmp_path, monkeypatch, capsys):
    # the reference: the same run, ending after update 2
    assert run_sppo(tmp_path, monkeypatch, *CARTPOLE, "--total-episodes", 8, "--run-name", "ref") == 0
    capsys.readouterr()
    monkeypatch.setattr(sppo, "policy_loss", nth_call(3, nan_loss)(sppo.policy_loss))
    assert run_sppo(tmp_path, monkeypatch, *CARTPOLE, "--save-every", 2, "--run-name", "nan") == 3
    line = error_line(capsys)
    assert line.startswith(f"error: update 3: the policy loss is NaN: training diverged; "
                           f"{os.path.join('runs', 'nan', 'model.pt')} keeps update 2, the last finite checkpoint")
    assert "--max-grad-norm" not in line   # clipping is already on (0.5)
    kept, ref = (torch.load(tmp_path / f"runs/{r}/model.pt", weights_only=True) for r in ("nan", "ref"))
    assert kept["progress"]["update"] == 2
    for net in ("actor", "critic"):
        assert all(torch.equal(kept[net][k], ref[net][k]) for k in ref[net])
    assert rows(tmp_path / "runs/nan/progress.csv") == rows(tmp_path / "runs/ref/progress.csv")
    assert [r["update"] for r in rows(tmp_path / "runs/nan/progress.csv")] == ["1", "2"]


def test_rows_after_the_checkpoint_are_dropped_and_the_bad_update_gets_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sppo, "policy_loss", nth_call(5, nan_loss)(sppo.policy_loss))
    assert run_sppo(tmp_path, monkeypatch, *CARTPOLE, "--save-every", 3, "--run-name", "r") == 3
    assert error_line(capsys).startswith("error: update 5: the policy loss is NaN")
    assert [r["update"] for r in rows(tmp_path / "runs/r/progress.csv")] == ["1", "2", "3"]
    assert torch.load(tmp_path / "runs/r/model.pt", weights_only=True)["progress"]["update"] == 3


def grad_hook(monkeypatch, n, value):
    """From the n-th backward on, the actor's first weight gets `value` added to its gradient. Returns the
    built networks."""
    built = {}

    def build(*args, **kwargs):
        env, actor, critic, optimizer = real_build(*args, **kwargs)
        calls = []

        def hook(grad):
            calls.append(1)
            return grad + value if len(calls) >= n else grad
        next(actor.parameters()).register_hook(hook)
        built.update(actor=actor, critic=critic)
        return env, actor, critic, optimizer
    real_build = sppo.build
    monkeypatch.setattr(sppo, "build", build)
    return built


@pytest.mark.parametrize("max_grad_norm", [0.5, 0])
@pytest.mark.parametrize("value, kind", [(float("inf"), "infinite"), (float("nan"), "NaN")])
def test_a_non_finite_gradient_never_reaches_the_weights(tmp_path, monkeypatch, capsys, max_grad_norm, value, kind):
    # clip_grad_norm_ returns the norm it measured; without clipping the norm is measured all the same
    built = grad_hook(monkeypatch, 2, value)
    assert run_sppo(tmp_path, monkeypatch, *CARTPOLE, "--max-grad-norm", max_grad_norm, "--run-name", "g") == 3
    line = error_line(capsys)
    assert line.startswith(f"error: update 2: the actor's gradient norm is {kind}: training diverged; nothing was saved")
    assert line.endswith("--max-grad-norm 0.5") == (max_grad_norm == 0)
    for net in built.values():   # the optimizer never stepped with it
        assert all(torch.isfinite(p).all() for p in net.parameters())
    assert [r["update"] for r in rows(tmp_path / "runs/g/progress.csv")] == []


def test_a_non_finite_weight_after_the_step_is_not_saved(tmp_path, monkeypatch, capsys):
    def build(*args, **kwargs):
        env, actor, critic, optimizer = real_build(*args, **kwargs)
        step = optimizer.step

        def bad_step(*a, **k):   # an optimizer step that overflows one weight of the critic in update 3
            out = step(*a, **k)
            bad_step.calls += 1
            if bad_step.calls == 3:
                with torch.no_grad():
                    next(critic.parameters())[0, 0] = float("inf")
            return out
        bad_step.calls = 0
        optimizer.step = bad_step
        return env, actor, critic, optimizer
    real_build = sppo.build
    monkeypatch.setattr(sppo, "build", build)
    assert run_sppo(tmp_path, monkeypatch, *CARTPOLE, "--save-every", 1, "--run-name", "w") == 3
    assert error_line(capsys).startswith("error: update 3: a weight of the critic after the optimizer step is infinite: "
                                         f"training diverged; {os.path.join('runs', 'w', 'model.pt')} keeps update 2")
    kept = torch.load(tmp_path / "runs/w/model.pt", weights_only=True)
    assert kept["progress"]["update"] == 2 and all_finite(kept["actor"]) and all_finite(kept["critic"])


def nan_actions(out):
    action, logp = out
    return action * float("nan"), logp


def nan_logp(out):
    action, logp = out
    return action, logp * float("nan")


@pytest.mark.parametrize("env, change, what", [
    ("BipedalWalker-v3", nan_actions, "an action of the policy is NaN"),   # Box2D: its assertion used to end the run
    ("Pendulum-v1", nan_actions, "an action of the policy is NaN"),        # native torch env: checked per chunk
    ("Pendulum-v1", nan_logp, "the log-prob of a sampled action is NaN"),
])
def test_non_finite_actions_stop_the_run_before_the_env_takes_them(tmp_path, monkeypatch, capsys, env, change, what):
    if env.startswith("Bipedal"):
        pytest.importorskip("Box2D")
    # each update samples 20 steps: the 25th action is drawn in update 2
    monkeypatch.setattr(sppo.Actor, "act", nth_call(25, change)(sppo.Actor.act))
    assert run_sppo(tmp_path, monkeypatch, "--env", env, "--num-episodes", 2, "--minibatches", 1, "--epochs", 1,
                    "--horizon", 20, "--total-steps", 1000, "--save-every", 1, "--run-name", "a") == 3
    assert error_line(capsys).startswith(f"error: update 2: {what}: training diverged; "
                                         f"{os.path.join('runs', 'a', 'model.pt')} keeps update 1")


def test_rollout_checks_each_action_before_a_gymnasium_env_steps():
    env = envs.make_env("Pendulum-v1", 2, backend="gymnasium")
    taken = []
    step = env.step
    env.step = lambda actions: taken.append(actions.clone()) or step(actions)

    def act(obs):
        action = torch.zeros(obs.shape[0], 1)
        return (action * float("nan") if len(taken) == 3 else action), torch.zeros(obs.shape[0])
    with pytest.raises(FloatingPointError, match="an action of the policy is NaN"):
        envs.rollout(env, act, horizon=10)
    assert len(taken) == 3 and all(torch.isfinite(a).all() for a in taken)


def test_a_resumed_run_keeps_the_checkpoint_it_resumed(tmp_path, monkeypatch, capsys):
    assert run_sppo(tmp_path, monkeypatch, *CARTPOLE, "--total-episodes", 8, "--run-name", "r") == 0
    capsys.readouterr()
    monkeypatch.setattr(sppo, "policy_loss", nth_call(2, nan_loss)(sppo.policy_loss))
    assert run_sppo(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", "--total-episodes", 40) == 3
    line = error_line(capsys)
    assert line.startswith("error: update 4: the policy loss is NaN") and "keeps update 2" in line
    assert torch.load(tmp_path / "runs/r/model.pt", weights_only=True)["progress"]["update"] == 2
    assert [r["update"] for r in rows(tmp_path / "runs/r/progress.csv")] == ["1", "2"]


def test_one_episode_is_trained_on_its_own_advantage(tmp_path, monkeypatch):
    # --num-episodes 1 with --norm-adv: A = R (reinforce) on every step, not the rounding noise of R - mean(R)
    seen = []

    def spy(logp, logp_old, advantages, step_mask, *args):
        seen.append(advantages[step_mask > 0])
        return real(logp, logp_old, advantages, step_mask, *args)
    real = sppo.policy_loss
    monkeypatch.setattr(sppo, "policy_loss", spy)
    assert run_sppo(tmp_path, monkeypatch, "--env", "CartPole-v1", "--algo", "reinforce", "--num-episodes", 1,
                    "--minibatches", 1, "--epochs", 1, "--total-episodes", 2, "--run-name", "one") == 0
    returns = [float(r["mean_return"]) for r in rows(tmp_path / "runs/one/progress.csv")]
    assert len(seen) == 2
    for adv, R in zip(seen, returns):
        assert torch.equal(adv, torch.full_like(adv, R))


# ------------------------------------------------------------------------------------------------
# llm_demo.py, on the tiny random model
# ------------------------------------------------------------------------------------------------
TINY_FLAGS = ["--n-train", 40, "--n-eval", 4, "--eval-k", 2, "--batch-size", 4, "--micro-batch", 2,
              "--max-new-tokens", 6, "--log-every", 0, "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_lm(str(tmp_path_factory.mktemp("tiny_lm")))


def run_llm(tmp_path, monkeypatch, *args):
    monkeypatch.chdir(tmp_path)
    try:
        return llm_demo.main([str(a) for a in args])
    except SystemExit as e:   # a non-finite number ends the process
        return e.code


def test_llm_a_nan_loss_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch, capsys, tiny):
    monkeypatch.setattr(llm_demo, "policy_loss", nth_call(5, nan_loss)(llm_demo.policy_loss))   # 2 micro-batches a step
    assert run_llm(tmp_path, monkeypatch, "--model", tiny, *TINY_FLAGS, "--steps", 5, "--save-every", 2,
                   "--run-name", "l") == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(line) == 1 and line[0].startswith(f"error: step 3: the policy loss is NaN: training diverged; "
                                                 f"{os.path.join('runs', 'l', 'model.pt')} keeps step 2")
    kept = torch.load(tmp_path / "runs/l/model.pt", weights_only=True)
    from transformers import AutoModelForCausalLM
    policy = AutoModelForCausalLM.from_pretrained(tmp_path / "runs/l/policy").state_dict()   # the weights, once
    assert kept["progress"]["step"] == 2 and all_finite(policy)
    assert (tmp_path / "runs/l/policy/step.txt").read_text().strip() == "2"
    assert [r["step"] for r in rows(tmp_path / "runs/l/progress.csv")] == ["1", "2"]
    assert not os.path.exists(tmp_path / "runs/l/results.json")   # no policy scored or saved after it


@pytest.mark.parametrize("max_grad_norm", [1.0, 0])
def test_llm_a_non_finite_gradient_never_reaches_the_weights(tmp_path, monkeypatch, capsys, tiny, max_grad_norm):
    loaded = {}

    def load(*args, **kwargs):
        policy = real_load(*args, **kwargs)
        next(policy.model.parameters()).register_hook(lambda g: g + float("inf"))
        loaded["policy"] = policy
        return policy
    real_load = llm_models.load
    monkeypatch.setattr(llm_models, "load", load)
    # the tiny model is never right, and under the default --flat-batches hold a batch without reward spread
    # takes no policy backward at all; skip still runs it (on zero advantages), so the hook's inf arrives
    assert run_llm(tmp_path, monkeypatch, "--model", tiny, *TINY_FLAGS, "--steps", 2, "--flat-batches", "skip",
                   "--max-grad-norm", max_grad_norm, "--run-name", "g") == 3
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert len(line) == 1 and line[0].startswith("error: step 1: the policy's gradient norm is infinite: "
                                                 "training diverged; nothing was saved")
    assert line[0].endswith("--max-grad-norm 1") == (max_grad_norm == 0)
    assert all(torch.isfinite(p).all() for p in loaded["policy"].model.parameters())
    assert not os.path.exists(tmp_path / "runs/g/model.pt")


def test_llm_one_response_is_trained_on_its_own_advantage(tmp_path, monkeypatch, tiny):
    # --batch-size 1 --norm-adv: A = R - V(prompt) on every token (standardize sees [T, B]: one response)
    advantages, seen = [], []

    def spy_adv(*args, **kwargs):
        out = real_adv(*args, **kwargs)
        advantages.append(out[0])
        return out

    def spy_loss(logp, logp_old, adv, step_mask, *args):
        seen.append(adv[step_mask > 0])
        return real_loss(logp, logp_old, adv, step_mask, *args)
    real_adv, real_loss = llm_demo.compute_advantages, llm_demo.policy_loss
    monkeypatch.setattr(llm_demo, "compute_advantages", spy_adv)
    monkeypatch.setattr(llm_demo, "policy_loss", spy_loss)
    assert run_llm(tmp_path, monkeypatch, "--model", tiny, *TINY_FLAGS, "--batch-size", 1, "--micro-batch", 1,
                   "--norm-adv", "--steps", 2, "--run-name", "one") == 0
    assert len(seen) == 2
    for A, adv in zip(advantages, seen):
        assert A.shape == (1,) and torch.equal(adv, A.expand_as(adv))
    for r in rows(tmp_path / "runs/one/progress.csv"):
        assert r["adv_std"] == "0.0"   # one advantage has no spread; torch's std() of it is NaN
