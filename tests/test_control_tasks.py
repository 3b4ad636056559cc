"""The control benchmark's tasks (control_tasks.py): success predicates at their boundaries, the 0/1
reward only on the final step, the horizon, --task / --init (and the RL-stage settings a task carries),
every stage end to end on tiny budgets, and eval / gif / watch on every kind of checkpoint."""
import math
import os

import numpy as np
import pytest
import torch

import control_tasks as ct
import envs
import runlog
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
    assert ct.main(["eval"]) == 2 and "eval needs a checkpoint" in capsys.readouterr().err
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
    # what sft stores is what eval measures: evaluate() at the same seed (EVAL_SEED, eval's default)
    assert info["eval_seed"] == ct.EVAL_SEED and ct.main(["eval", "sft.pt", "--episodes", "4"]) == 0
    assert capsys.readouterr().out.strip().endswith(", the same measurement")
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


# ------------------------------------------------------------------------------------------------
# eval, gif and watch on what a newcomer has: the run `python sppo.py --env CartPole-v1` just wrote
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """A folder holding runs/cp/, a tiny CartPole-v1 run of sppo.py (one update): a policy that falls early."""
    root = tmp_path_factory.mktemp("cartpole")
    here = os.getcwd()
    os.chdir(root)
    try:
        assert sppo.main(["--env", "CartPole-v1", "--total-steps", "1", "--run-name", "cp"]) == 0
    finally:
        os.chdir(here)
    return root


def test_eval_measures_a_plain_gymnasium_run(cartpole_run, monkeypatch, capsys):
    """A run on a gymnasium id (no --task) is measured on that id: mean ± std of its return, and the success
    rate of its predicate (CartPole-v1: reached the time limit); the folder stands for its model.pt."""
    monkeypatch.chdir(cartpole_run)
    capsys.readouterr()
    assert ct.main(["eval", "runs/cp", "--episodes", "20"]) == 0
    out = capsys.readouterr().out.strip()
    actor, args = ct.load_actor("runs/cp")
    expect = ct.evaluate(actor, args, 20, seed=0)
    assert out == (f"runs/cp/model.pt on CartPole-v1 (H = 500): return {expect['mean_return']:.1f} ± "
                   f"{expect['std_return']:.1f} (mean ± std over 20 episodes, seed 0), success rate "
                   f"{expect['success_rate']:.1%}")
    assert expect["mean_return"] == expect["mean_length"] < 500 and expect["std_return"] > 0   # +1 a step, falls early


def test_eval_is_seeded_and_leaves_the_callers_random_numbers_alone(cartpole_run, monkeypatch, capsys):
    """The same command prints the same numbers (the actions were sampled from an unseeded generator: 17.0%,
    then 22.0%); another seed other ones; and measuring a policy does not move torch's generator."""
    monkeypatch.chdir(cartpole_run)
    outs = []
    for i, seed in enumerate(("3", "3", "4")):
        torch.manual_seed(100 + i)   # whatever the state of the caller's generator, the same numbers
        assert ct.main(["eval", "runs/cp", "--episodes", "30", "--seed", seed]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0] != outs[2]
    actor, args = ct.load_actor("runs/cp")
    torch.manual_seed(7)
    ct.evaluate(actor, args, 4)
    after = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(after, torch.rand(3))


def test_gif_lands_in_the_run_folder_and_says_how_the_episode_ended(cartpole_run, monkeypatch, capsys):
    monkeypatch.chdir(cartpole_run)
    from PIL import Image
    assert ct.main(["gif", "runs/cp"]) == 0
    line = capsys.readouterr().out.strip()
    img = Image.open("runs/cp/episode.gif")   # beside model.pt, not in the current folder
    steps = int(line.split(" after ")[1].split()[0])
    # CartPole-v1's success: balanced until the time limit (500); this policy falls, and the GIF says so
    assert steps < 500 and line == f"wrote runs/cp/episode.gif: one episode (seed 0), CartPole-v1: failure after " \
                                   f"{steps} steps, return {steps:.1f}"
    assert img.info["comment"].decode() == line.split("(seed 0), ")[1]
    img.seek(img.n_frames - 1)
    assert img.info["duration"] == 2000 and img.n_frames == steps // 2 + 1 + steps % 2
    red, green, _ = img.convert("RGB").getpixel((1, img.height - 2))   # the caption strip under the last frame
    assert red > 150 and green < 80
    assert not os.path.exists("episode.gif")
    assert ct.main(["gif", "runs/cp"]) == 0 and capsys.readouterr().out.strip() == line   # seeded: the same episode


def test_gif_of_a_task_checkpoint_reports_its_success(tmp_path, monkeypatch, capsys):
    """The committed mountaincar expert reaches the flag from seed 0's start (it ends the episode): the GIF
    and the printed line say success, in green, beside the checkpoint unless --out says otherwise."""
    monkeypatch.chdir(tmp_path)
    assert ct.main(["gif", os.path.join(REPO, "checkpoints", "mountaincar-expert.pt"), "--out", "mc.gif"]) == 0
    line = capsys.readouterr().out.strip()
    steps = int(line.split(" after ")[1].split()[0])
    assert line == f"wrote mc.gif: one episode (seed 0), mountaincar: success after {steps} steps" and steps < 1000
    from PIL import Image
    img = Image.open("mc.gif")
    img.seek(img.n_frames - 1)
    red, green, _ = img.convert("RGB").getpixel((1, img.height - 2))
    assert green > 120 and red < 80
    beside = os.path.join(REPO, "checkpoints", "mountaincar-expert")
    assert ct.gif_path(beside + ".pt") == beside + ".gif"   # no --out: beside the checkpoint, named after it


def test_watch_is_eval_then_gif(cartpole_run, monkeypatch, capsys):
    monkeypatch.chdir(cartpole_run)
    assert ct.main(["watch", "runs/cp", "--episodes", "10", "--out", "w.gif"]) == 0
    measured, wrote = capsys.readouterr().out.strip().splitlines()
    assert measured.startswith("runs/cp/model.pt on CartPole-v1 (H = 500): return") and wrote.startswith("wrote w.gif: ")
    assert os.path.getsize("w.gif") > 0


def test_a_task_other_than_the_checkpoints_is_refused_or_judged_loudly(cartpole_run, monkeypatch, capsys):
    """--task precision-cartpole on a CartPole-v1 run silently measured it under the stricter rule; now it is
    refused in one line, and --judge-by asks for that measurement explicitly and says what it is."""
    monkeypatch.chdir(cartpole_run)
    capsys.readouterr()
    assert ct.main(["eval", "runs/cp", "--task", "precision-cartpole", "--episodes", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was trained on --env CartPole-v1, not on --task precision-cartpole" in err[0]
    assert "--judge-by precision-cartpole" in err[0]
    assert ct.main(["eval", "runs/cp", "--judge-by", "precision-cartpole", "--episodes", "5"]) == 0
    note, line = capsys.readouterr().out.strip().splitlines()
    assert note.startswith("NOTE: evaluating a CartPole-v1 policy under precision-cartpole's rule (H = 200")
    assert "on precision-cartpole's rule (CartPole-v1, H = 200; a policy trained on --env CartPole-v1): success rate" in line
    assert ct.main(["gif", "runs/cp", "--judge-by", "pendulum", "--out", "x.gif"]) == 2   # another env: never
    assert "--judge-by pendulum measures a policy in Pendulum-v1" in capsys.readouterr().err


def test_a_continuous_action_run_is_measured_and_rendered(tmp_path, monkeypatch, capsys):
    """Pendulum-v1 (a Gaussian policy, a float Box action) through eval and gif: its return, and its predicate
    (upright at the end) as the success rate."""
    monkeypatch.chdir(tmp_path)
    assert sppo.main(["--env", "Pendulum-v1", "--total-steps", "1", "--num-episodes", "4", "--minibatches", "2",
                      "--run-name", "pd"]) == 0
    capsys.readouterr()
    assert ct.main(["watch", "runs/pd", "--episodes", "4"]) == 0
    measured, wrote = capsys.readouterr().out.strip().splitlines()
    assert measured.startswith("runs/pd/model.pt on Pendulum-v1 (H = 200): return -") and "success rate" in measured
    assert wrote.startswith("wrote runs/pd/episode.gif: one episode (seed 0), Pendulum-v1: ")
    assert " after 200 steps, return -" in wrote


def test_the_stored_success_rate_is_what_eval_measures(tmp_path, monkeypatch, capsys):
    """A committed SFT checkpoint stores the number `eval` prints by default: one function (evaluate), one seed."""
    monkeypatch.chdir(tmp_path)
    path = os.path.join(REPO, "checkpoints", "precision-cartpole-sft.pt")
    stored = torch.load(path, weights_only=True)["sft"]
    assert (stored["eval_episodes"], stored["eval_seed"]) == (500, ct.EVAL_SEED)
    assert ct.main(["eval", path]) == 0
    line, note = capsys.readouterr().out.strip().splitlines()
    assert f"success rate {stored['success_rate']:.1%} ({round(stored['success_rate'] * 500)} of 500 episodes, seed 0)" in line
    assert note == f"stored in the checkpoint: {stored['success_rate']:.1%} over 500 episodes at seed 0, the same measurement"
    assert ct.main(["eval", path, "--episodes", "7"]) == 0
    assert "(--episodes 500 --seed 0 repeats that measurement)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expect", [
    (["eval", "runs"], "runs is a folder without model.pt"),
    (["watch", "nowhere"], "checkpoint not found: nowhere"),
    (["watch", "junk.pt"], "cannot read checkpoint junk.pt"),
    (["watch", "runs/cp", "--out", "missing/x.gif"], "the folder missing does not exist"),
    (["gif", "runs/cp", "--checkpoint", "other.pt"], "two checkpoints given"),
    (["eval", "runs/cp", "--episodes", "0"], "--episodes must be a positive integer"),
])
def test_watch_refuses_bad_input_in_one_line(cartpole_run, monkeypatch, capsys, argv, expect):
    monkeypatch.chdir(cartpole_run)
    (cartpole_run / "junk.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert ct.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err


@pytest.mark.parametrize("command, has, lacks", [
    ("eval", ["--episodes", "(default: 500)", "--seed", "--judge-by", "PATH"], ["--out", "--total-steps"]),
    ("gif", ["--out", "episode.gif", "--seed"], ["--episodes", "--total-steps"]),
    ("watch", ["--episodes", "--out"], ["--total-steps", "--expert"]),
    ("expert", ["--total-steps", "(default: 1)", "checkpoints/<task>-expert.pt"], ["--episodes", "--judge-by"]),
    ("sft", ["--expert", "--episodes", "checkpoints/<task>-sft.pt"], ["--total-steps", "--judge-by"]),
])
def test_each_command_has_its_own_help(capsys, command, has, lacks):
    with pytest.raises(SystemExit) as done:
        ct.main([command, "--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0 and text.startswith(f"usage: ") and f" {command} " in text.splitlines()[0]
    assert all(word in text for word in has) and not any(word in text for word in lacks), text


# ------------------------------------------------------------------------------------------------
# --task carries the RL stage's settings (envs.Task.rl), unless the flag was typed
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, lr, norm_adv, ratio, applied", [
    (["--task", "mountaincar"], 1e-4, False, "token", ["--lr 0.0001", "--no-norm-adv", "--ratio token"]),
    (["--task", "mountaincar", "--ratio", "seq"], 1e-4, False, "seq", ["--lr 0.0001", "--no-norm-adv"]),
    (["--task", "mountaincar", "--lr", "0.003", "--norm-adv"], 3e-3, True, "token", ["--ratio token"]),   # typed = default
    (["--task", "mountaincar", "--reward", "shaped"], 3e-3, True, "seq", []),   # the expert stage: its own settings
    (["--env", "CartPole-v1"], 3e-3, True, "seq", []),
])
def test_a_task_sets_the_rl_stages_settings_unless_typed(argv, lr, norm_adv, ratio, applied):
    args, done = sppo.task_settings(runlog.parse_args(argv, sppo.Args))
    assert (args.lr, args.norm_adv, args.ratio, done) == (lr, norm_adv, ratio, applied)


def test_every_task_carries_settings_sppo_knows():
    fields = {f.name for f in __import__("dataclasses").fields(sppo.Args)}
    assert all(set(task.rl) <= fields and task.rl == envs.RL_STAGE for task in envs.TASKS.values())
    assert envs.RL_STAGE == {"lr": 1e-4, "norm_adv": False, "ratio": "token"}   # README's RL stage


def test_a_task_run_says_which_settings_it_applied_and_resume_keeps_the_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert sppo.main(["--task", "precision-cartpole", "--total-episodes", "64", "--run-name", "a"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("--task")]
    assert said == ["--task precision-cartpole: the RL stage's settings --lr 0.0001 --no-norm-adv --ratio token "
                    "(a flag you type wins; README, \"The control benchmark\")"]
    saved = torch.load("runs/a/model.pt", weights_only=True)["args"]
    assert (saved["lr"], saved["norm_adv"], saved["ratio"]) == (1e-4, False, "token")
    # a run made with sppo.py's defaults (as every task run before the task carried its settings) resumes with them
    assert sppo.main(["--task", "precision-cartpole", "--lr", "0.003", "--norm-adv", "--ratio", "seq",
                      "--total-episodes", "64", "--run-name", "b"]) == 0
    assert sppo.main(["--resume", "runs/b/model.pt", "--total-episodes", "128"]) == 0
    assert "RL stage's settings" not in capsys.readouterr().out
    resumed = torch.load("runs/b/model.pt", weights_only=True)
    assert resumed["progress"]["episodes"] == 128
    assert (resumed["args"]["lr"], resumed["args"]["norm_adv"], resumed["args"]["ratio"]) == (3e-3, True, "seq")


@pytest.mark.parametrize("ratio", ["token", "seq", "joint"])
def test_the_benchmarks_runs_keep_their_settings(ratio, monkeypatch):
    """benchmarks/rlvr.py types the RL stage's flags itself: a task changes none of them (its ratio ablation
    keeps seq and joint), so its runs are the ones it made before the task carried its settings."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "benchmarks"))
    import rlvr
    run = rlvr.declare("pendulum", "sppo", seed=1, ratio=ratio, episodes=8)
    given = runlog.parse_args(run.flags + run.budget, sppo.Args)
    args, applied = sppo.task_settings(given)
    assert applied == [] and (args.lr, args.norm_adv, args.ratio) == (1e-4, False, ratio)
