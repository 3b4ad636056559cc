"""The control benchmark's tasks (control_tasks.py): success predicates at their boundaries, the 0/1
reward only on the final step, the horizon, --task / --init, and every stage end to end on tiny budgets."""
import math
import os

import numpy as np
import pytest
import torch

import control_tasks as ct
import envs
import sppo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

T, F = torch.tensor([True]), torch.tensor([False])


def obs_with(dim, **values):
    """One observation [1, dim] of zeros with the given components set, e.g. obs_with(4, i2=0.1)."""
    o = torch.zeros(1, dim)
    for k, v in values.items():
        o[0, int(k[1:])] = v
    return o


# ------------------------------------------------------------------------------------------------
# the predicates, holding and failing at their boundaries
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("theta_deg, term, trunc, expect", [
    (0.49, F, T, True), (-0.49, F, T, True), (0.51, F, T, False), (-0.51, F, T, False),
    (0.0, T, T, False),    # fell on the very last step: a fall is a failure even at the time limit
    (0.0, F, F, False),    # still running (cut before H): not judged a success
])
def test_precision_cartpole_success(theta_deg, term, trunc, expect):
    obs = obs_with(4, i2=math.radians(theta_deg))
    assert bool(ct.TASKS["precision-cartpole"].success(obs, torch.ones(1), term, trunc, {})) is expect


@pytest.mark.parametrize("cos, expect", [(0.81, True), (0.79, False), (-1.0, False), (1.0, True)])
def test_pendulum_success(cos, expect):
    obs = obs_with(3, i0=cos)
    assert bool(ct.TASKS["pendulum"].success(obs, torch.zeros(1), F, T, {})) is expect


@pytest.mark.parametrize("x, legs, term, reward, expect", [
    (0.39, (1, 1), T, 100.0, True),     # came to rest on both legs inside the pad
    (-0.39, (1, 1), F, 0.0, True),      # on the ground at the horizon (not yet at rest)
    (0.41, (1, 1), T, 100.0, False),    # outside the pad
    (0.0, (1, 0), T, 100.0, False),     # one leg
    (0.0, (1, 1), T, -90.0, False),     # a crash with both legs down: gymnasium's -100 on that step
])
def test_lunarlander_success(x, legs, term, reward, expect):
    obs = obs_with(8, i0=x, i6=legs[0], i7=legs[1])
    assert bool(ct.TASKS["lunarlander"].success(obs, torch.tensor([reward]), term, ~term, {})) is expect


@pytest.mark.parametrize("x, term, trunc, expect", [
    (1.01, F, T, True), (0.99, F, T, False),
    (3.0, T, F, False),   # fell (terminated) far ahead: not survived
])
def test_hopper_success_reads_x_from_info(x, term, trunc, expect):
    info = {"x_position": np.array([x])}
    assert bool(ct.TASKS["hopper"].success(torch.zeros(1, 11), torch.ones(1), term, trunc, info)) is expect


def test_mountaincar_flag_is_at_045():
    env = envs.make_task("mountaincar", 2)
    env.env.state = torch.tensor([[0.449, 0.0], [0.449, 0.07]])
    obs, reward, term, trunc, info = env.step(torch.tensor([1, 2]))
    assert term.tolist() == [False, True] and info["success"].tolist() == [False, True]
    assert reward.tolist() == [0.0, 1.0]


def test_unknown_task_is_one_clear_error():
    with pytest.raises(envs.EnvError, match="unknown --task 'moon'.*precision-cartpole"):
        envs.make_task("moon", 1)


# ------------------------------------------------------------------------------------------------
# the outcome reward: 0 everywhere but the last real step, which holds the success; the horizon
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["precision-cartpole", "mountaincar", "pendulum"])
def test_reward_is_the_outcome_on_the_last_step_only(name):
    torch.manual_seed(0)
    env = envs.make_task(name, 16, seed=0)
    actor = sppo.Actor(env.single_observation_space.shape[0], env.single_action_space)
    batch = envs.rollout(env, actor.act, seed=0)
    H = ct.TASKS[name].horizon
    assert batch.step_mask.shape[0] <= H and int(batch.lengths.max()) <= H
    last = (batch.lengths.long() - 1)[None]
    final_reward = batch.rewards.gather(0, last)[0]
    assert torch.equal(final_reward, batch.success.float())
    assert float((batch.rewards * batch.step_mask).sum()) == float(batch.success.sum())
    # not-terminated episodes run exactly H steps
    assert torch.all(batch.lengths[~batch.terminated] == H)


def test_pendulum_episodes_last_the_paper_horizon():
    env = envs.make_task("pendulum", 2)
    actor = sppo.Actor(3, env.single_action_space)
    batch = envs.rollout(env, actor.act, seed=0)
    assert batch.lengths.tolist() == [1000.0, 1000.0] and batch.truncated.all()


def test_shaped_reward_mountaincar_telescopes():
    """The energy bonus of the expert stage sums to the energy gained over the episode: swinging
    without reaching the flag earns no more than ~100."""
    env = envs.make_task("mountaincar", 4, reward="shaped", horizon=200)
    actor = sppo.Actor(2, env.single_action_space)
    batch = envs.rollout(env, actor.act, seed=0)
    energy = envs._mountaincar_energy
    expected = -batch.lengths + 6e4 * (energy(batch.final_obs) - energy(batch.s0)) + 100 * batch.terminated.float()
    assert torch.allclose(batch.returns, expected, atol=1e-2)


# ------------------------------------------------------------------------------------------------
# the stages, end to end on tiny budgets; --task and --init through sppo.py
# ------------------------------------------------------------------------------------------------
def test_expert_then_sft_then_rl_from_it(tmp_path, monkeypatch):
    """The three stages on tiny budgets: a short expert on mountaincar's shaped reward, SFT on its
    successful episodes, and the RL stage started from the SFT checkpoint."""
    monkeypatch.chdir(tmp_path)
    assert ct.main(["expert", "--task", "mountaincar", "--total-steps", "150000", "--out", "expert.pt"]) == 0
    expert = "expert.pt"
    ckpt = torch.load(expert, weights_only=True)
    assert ckpt["args"]["task"] == "mountaincar" and ckpt["args"]["reward"] == "shaped"
    assert ckpt["expert"]["total_steps"] == 150_000 and os.path.exists("runs/expert-mountaincar-1/progress.csv")
    assert ckpt["expert"]["success_rate"] > 0, "a 150k-step expert reaches the flag"
    assert ct.main(["expert", "--task", "mountaincar", "--out", "expert.pt"]) == 2   # never overwrites a run
    info = ct.sft("mountaincar", expert, "sft.pt", demos=2, bc_steps=20, eval_episodes=16)
    assert info["demos"] == 2 and info["demo_steps"] > 0 and 0.0 <= info["success_rate"] <= 1.0
    actor, args = ct.load_actor("sft.pt")
    assert args.task == "mountaincar"
    action, logp = actor.act(torch.zeros(5, 2))
    assert action.shape == (5,) and logp.shape == (5,)
    assert sppo.main(["--task", "mountaincar", "--init", "sft.pt", "--total-episodes", "8", "--run-name", "rl"]) == 0
    rl = torch.load(os.path.join("runs", "rl", "model.pt"), weights_only=True)
    assert rl["args"]["init"] == "sft.pt" and rl["args"]["num_episodes"] == 8 and rl["args"]["reward"] == "success"
    assert rl["progress"]["episodes"] == 8


def test_init_loads_the_actor_and_not_the_critic(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sppo.main(["--task", "precision-cartpole", "--total-episodes", "64", "--run-name", "a"]) == 0
    src = torch.load("runs/a/model.pt", weights_only=True)
    seen = {}
    real = sppo.init_actor

    def spy(args, actor):
        real(args, actor)
        seen.update({k: v.clone() for k, v in actor.state_dict().items()})
    monkeypatch.setattr(sppo, "init_actor", spy)
    assert sppo.main(["--task", "precision-cartpole", "--init", "runs/a/model.pt", "--total-episodes", "64",
                      "--run-name", "b", "--algo", "ppo"]) == 0
    assert all(torch.equal(seen[k], src["actor"][k]) for k in src["actor"])


@pytest.mark.parametrize("argv, expect", [
    (["--task", "moon"], "unknown --task 'moon'"),
    (["--task", "pendulum", "--init", "nowhere.pt"], "checkpoint not found: nowhere.pt"),
    (["--reward", "shaped"], "--reward shaped is the expert stage of a --task"),
    (["--task", "pendulum", "--total-episodes", "-1"], "--total-episodes must be >= 0"),
])
def test_bad_task_input_is_one_line(tmp_path, monkeypatch, capsys, argv, expect):
    monkeypatch.chdir(tmp_path)
    assert sppo.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1


def test_init_from_another_task_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert sppo.main(["--task", "precision-cartpole", "--total-episodes", "64", "--run-name", "a"]) == 0
    capsys.readouterr()
    assert sppo.main(["--task", "mountaincar", "--init", "runs/a/model.pt", "--total-episodes", "8"]) == 2
    assert "was trained on task 'precision-cartpole', not 'mountaincar'" in capsys.readouterr().err


def test_stage_commands_report_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert ct.main(["sft"]) == 2 and "sft needs --task" in capsys.readouterr().err
    assert ct.main(["eval"]) == 2 and "eval needs --checkpoint" in capsys.readouterr().err
    assert ct.main(["sft", "--task", "pendulum"]) == 2
    assert "checkpoint not found: checkpoints/pendulum-expert.pt" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert ct.main(["eval", "--checkpoint", "junk.pt"]) == 2 and "cannot read checkpoint" in capsys.readouterr().err


def test_eval_and_gif_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert sppo.main(["--task", "precision-cartpole", "--total-episodes", "64", "--run-name", "a"]) == 0
    assert ct.main(["eval", "--checkpoint", "runs/a/model.pt", "--episodes", "20"]) == 0
    assert "success rate" in capsys.readouterr().out
    assert ct.main(["gif", "--checkpoint", "runs/a/model.pt", "--out", "a.gif"]) == 0
    from PIL import Image
    img = Image.open("a.gif")
    assert img.n_frames > 2


def test_lunarlander_sft_from_the_classical_controller(tmp_path, monkeypatch, capsys):
    """LunarLander's expert is gymnasium's heuristic controller: the expert stage says so, SFT uses it."""
    monkeypatch.chdir(tmp_path)
    assert ct.main(["expert", "--task", "lunarlander"]) == 0 and "classical controller" in capsys.readouterr().out
    info = ct.sft("lunarlander", None, "sft.pt", demos=1, bc_steps=5, eval_episodes=4)
    assert info["demos"] == 1 and info["demo_steps"] > 0 and "LanderHeuristic" in info["expert"]
    actor, args = ct.load_actor("sft.pt")
    assert args.task == "lunarlander" and actor.act(torch.zeros(3, 8))[0].shape == (3,)
    with pytest.raises(ct.ConfigError, match="no classical controller"):
        ct.sft("pendulum", None, "x.pt")


@pytest.mark.parametrize("algo", ["sppo", "ppo", "grpo"])
def test_critic_warmup_leaves_the_actor_alone(algo):
    """--critic-warmup: the first updates train the critic only; the actor is exactly the SFT one."""
    torch.manual_seed(0)
    args = sppo.apply_task(sppo.Args(task="precision-cartpole", algo=algo, num_episodes=8, horizon=20))
    env, actor, critic, optimizer = sppo.build(args, torch.device("cpu"))
    before = [p.clone() for p in actor.parameters()]
    critic_before = None if critic is None else [p.clone() for p in critic.parameters()]
    sppo.update(args, env, actor, critic, optimizer, seed=0, train_actor=False)
    assert all(torch.equal(a, b) for a, b in zip(before, actor.parameters()))
    if critic is not None:
        assert not all(torch.equal(a, b) for a, b in zip(critic_before, critic.parameters()))
    sppo.update(args, env, actor, critic, optimizer, seed=1, train_actor=True)
    assert not all(torch.equal(a, b) for a, b in zip(before, actor.parameters()))


@pytest.mark.parametrize("task, compiled", [("mountaincar", True), ("hopper", False)])
def test_the_benchmark_compiles_only_the_native_tasks(task, compiled, tmp_path, monkeypatch):
    """benchmarks/rlvr.py --compile adds sppo.py's --compile where the env is a native torch one, and runs
    gymnasium's own envs (which cannot be compiled) eagerly instead of failing."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "benchmarks"))
    import rlvr
    seen = []

    def fake_run_sppo(name, flags, budget, run_dir):
        seen.append(flags)
        return "python sppo.py ...", [{"episodes": "8", "env_steps": "8000", "wall_time": "1.0", "success_rate": "0.5"}]
    monkeypatch.setattr(rlvr, "run_sppo", fake_run_sppo)
    monkeypatch.setattr(rlvr, "OUT", str(tmp_path))
    for compile in (False, True):
        rlvr.run_one(task, "sppo", seed=compile + 1, ratio="token", episodes=8, compile=compile)
    assert "--compile" not in seen[0] and ("--compile" in seen[1]) == compiled
