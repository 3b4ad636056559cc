"""Native torch environments (envs.py) against gymnasium 1.4's own classic-control environments.

Parity protocol (see test_parity_stepwise): K gymnasium envs, one per native copy, step side by side
on the same random actions for N_STEPS steps across many episode ends. Before every step the
gymnasium state is copied into the native env's `state`, so each step is compared from the SAME
state: gymnasium integrates in float64 (float32 for MountainCarContinuous), the native envs in
float32, and without re-syncing the rounding difference would grow chaotically (Acrobot) and a
comparison after hundreds of steps would say nothing. A short free-running stretch without re-sync is
checked separately with a looser tolerance (test_parity_free_running).

When a copy's episode ends on step k, the native env autoresets it on step k+1 (NEXT_STEP): that
step must give reward 0, terminated = truncated = False and the observation of the new state; the
gymnasium env is reset instead of stepped, and from step k+2 on the copies are compared again.
"""
import gymnasium as gym
import numpy as np
import pytest
import torch

import envs

ATOL = RTOL = 1e-5  # one-step parity (atol and rtol of torch.testing.assert_close), float32 vs float64
# ... except Acrobot at its speed limits (|dtheta2| = 9 pi, reached from the wide starts): one 0.2 s
# step turns a joint by up to 5.6 rad, and the float32 rounding of the state is amplified to ~3e-5
ACROBOT_WIDE_TOL = 5e-5
FREE_TOL, FREE_STEPS = 1e-4, 100  # free-running: one 100-step episode per copy, no re-sync
K, N_STEPS, TIME_LIMIT = 4, 1000, 50
IDS = list(envs.NATIVE_ENVS)

# Start states that reach the rules random actions rarely reach (goal, walls, speed limits, angle
# wrapping). Applied to the gymnasium env after each of its resets; the native env copies them.
WIDE_STARTS = {
    "CartPole-v1": lambda rng: rng.uniform([-2.3, -2, -0.2, -2], [2.3, 2, 0.2, 2]),
    "MountainCar-v0": lambda rng: rng.uniform([-1.2, -0.07], [0.55, 0.07]),
    "MountainCarContinuous-v0": lambda rng: rng.uniform([-1.2, -0.07], [0.5, 0.07]),
    "Pendulum-v1": lambda rng: rng.uniform([-20.0, -8.0], [20.0, 8.0]),
    "Acrobot-v1": lambda rng: rng.uniform([-np.pi, -np.pi, -4 * np.pi, -9 * np.pi], [np.pi, np.pi, 4 * np.pi, 9 * np.pi]),
}
# gymnasium's initial-state ranges [low, high] per state component
INIT_RANGES = {
    "CartPole-v1": ([-0.05] * 4, [0.05] * 4),
    "MountainCar-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "MountainCarContinuous-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "Pendulum-v1": ([-np.pi, -1.0], [np.pi, 1.0]),
    "Acrobot-v1": ([-0.1] * 4, [0.1] * 4),
}


def random_actions(env, rng):
    """Actions for K copies as (native tensor, list of gymnasium actions). Box actions reach a quarter
    of the range beyond each bound, so that clipping is exercised too."""
    space = env.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        a = rng.integers(0, space.n, size=K)
        return torch.as_tensor(a), [int(x) for x in a]
    span = space.high - space.low
    a = rng.uniform(space.low - span / 4, space.high + span / 4, size=(K,) + space.shape).astype(np.float32)
    return torch.as_tensor(a), list(a)


def gym_state(g):
    return torch.as_tensor(np.asarray(g.unwrapped.state, dtype=np.float64), dtype=torch.float32)


def set_gym_start(g, env_id, start, rng):
    if start == "wide":
        g.unwrapped.state = WIDE_STARTS[env_id](rng)


def assert_in_init_range(env_id, states):
    low, high = (torch.tensor(v, dtype=torch.float32) for v in INIT_RANGES[env_id])
    assert bool(((states >= low - 1e-6) & (states <= high + 1e-6)).all()), states


def run_side_by_side(env_id, start, n_steps, resync_every_step, seed=0, time_limit=TIME_LIMIT):
    """Step K gymnasium envs and one K-copy native env together; return the per-step errors and
    event counts. Asserts flags exactly and the NEXT_STEP autoreset contract on every step."""
    rng = np.random.default_rng(seed)
    gyms = [gym.make(env_id, max_episode_steps=time_limit, disable_env_checker=True) for _ in range(K)]
    for i, g in enumerate(gyms):
        g.reset(seed=seed * 100 + i)
        set_gym_start(g, env_id, start, rng)
    nat = envs.NATIVE_ENVS[env_id](K, seed=seed, max_episode_steps=time_limit)
    nat.reset()
    nat.state = torch.stack([gym_state(g) for g in gyms])
    ended = [False] * K
    errors, counts = [], {"terminated": 0, "truncated": 0, "autoreset": 0}
    for _ in range(n_steps):
        a_nat, a_gym = random_actions(nat, rng)
        if resync_every_step:  # the rows being autoreset ignore this (and their action)
            nat.state = torch.stack([gym_state(g) for g in gyms])
        obs, rew, term, trunc, _ = nat.step(a_nat)
        for i, g in enumerate(gyms):
            if ended[i]:  # NEXT_STEP: this step is the native reset of copy i
                assert rew[i] == 0 and not term[i] and not trunc[i]
                assert_in_init_range(env_id, nat.state[i:i + 1])
                torch.testing.assert_close(obs[i], nat._obs(nat.state)[i])
                assert int(nat.elapsed_steps[i]) == 0
                g.reset()
                set_gym_start(g, env_id, start, rng)
                nat.state[i] = gym_state(g)  # continue both from gymnasium's new start
                ended[i] = False
                counts["autoreset"] += 1
                continue
            g_obs, g_rew, g_term, g_trunc, _ = g.step(a_gym[i])
            assert (bool(term[i]), bool(trunc[i])) == (g_term, g_trunc), (i, obs[i], g_obs)
            errors.append((obs[i], torch.as_tensor(g_obs), rew[i], torch.tensor(float(g_rew))))
            counts["terminated"] += g_term
            counts["truncated"] += g_trunc
            ended[i] = g_term or g_trunc
    for g in gyms:
        g.close()
    return errors, counts


@pytest.mark.parametrize("start", ["default", "wide"])
@pytest.mark.parametrize("env_id", IDS)
def test_parity_stepwise(env_id, start):
    errors, counts = run_side_by_side(env_id, start, N_STEPS, resync_every_step=True)
    obs, g_obs, rew, g_rew = (torch.stack(x) for x in zip(*errors))
    tol = ACROBOT_WIDE_TOL if (env_id, start) == ("Acrobot-v1", "wide") else ATOL
    torch.testing.assert_close(obs, g_obs, atol=tol, rtol=tol)
    torch.testing.assert_close(rew, g_rew, atol=ATOL, rtol=RTOL)
    # the run must actually have crossed episode ends of each kind it can produce
    assert counts["truncated"] > 0 and counts["autoreset"] > 0, counts
    if env_id != "Pendulum-v1" and (start == "wide" or env_id == "CartPole-v1"):
        assert counts["terminated"] > 0, counts


@pytest.mark.parametrize("env_id", IDS)
def test_parity_free_running(env_id):
    """100 steps from gymnasium's own starts with NO re-sync (state copied only at resets): float32
    rounding accumulates. Measured worst errors: ~3e-5 (Pendulum), <1e-5 for the rest. Much longer
    runs are not comparable: by 500 steps Pendulum is off by ~5e-3, and Acrobot from wide starts
    (chaotic) drifts onto another trajectory entirely."""
    errors, _ = run_side_by_side(env_id, "default", FREE_STEPS, resync_every_step=False, seed=1,
                                 time_limit=FREE_STEPS)
    obs, g_obs, rew, g_rew = (torch.stack(x) for x in zip(*errors))
    torch.testing.assert_close(obs, g_obs, atol=FREE_TOL, rtol=FREE_TOL)
    torch.testing.assert_close(rew, g_rew, atol=FREE_TOL, rtol=FREE_TOL)


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_limits_and_initial_states(env_id):
    g = gym.make(env_id)
    env = envs.NATIVE_ENVS[env_id](4096, seed=0)
    assert env.env_id == env_id and env.num_envs == 4096 and env.device == torch.device("cpu")
    assert env.single_observation_space == g.observation_space
    assert env.single_action_space == g.action_space
    assert env.max_episode_steps == gym.spec(env_id).max_episode_steps
    assert envs.NATIVE_ENVS[env_id](2, max_episode_steps=7).max_episode_steps == 7
    obs = env.reset(seed=3)
    assert obs.dtype == torch.float32 and obs.shape == (4096,) + g.observation_space.shape
    assert_in_init_range(env_id, env.state)
    torch.testing.assert_close(obs, env._obs(env.state))
    # the draws fill the ranges, not a corner of them
    low, high = (torch.tensor(v, dtype=torch.float32) for v in INIT_RANGES[env_id])
    spread = env.state.max(0).values - env.state.min(0).values
    assert bool((spread >= 0.95 * (high - low)).all())


@pytest.mark.parametrize("env_id", IDS)
def test_seeding_and_groups(env_id):
    cls = envs.NATIVE_ENVS[env_id]
    a, b = cls(12, seed=5), cls(12, seed=99)
    s5 = a.state.clone()                              # constructor's seed = reset(seed=5)
    assert torch.equal(a.reset(seed=5), b.reset(seed=5)) and torch.equal(a.state, s5)
    assert not torch.equal(a.reset(seed=5), a.reset(seed=6))
    assert not torch.equal(a.reset(), a.reset())      # an unseeded reset continues the stream
    obs = a.reset(seed=7, group_size=4)
    groups = a.state.view(3, 4, -1)
    assert torch.equal(groups, groups[:, :1].expand_as(groups))      # one s0 per group
    assert len({tuple(g[0].tolist()) for g in groups}) == 3          # different across groups
    assert torch.equal(obs, a.reset(seed=7, group_size=4))
    with pytest.raises(ValueError):
        a.reset(group_size=5)


@pytest.mark.parametrize("env_id", IDS)
def test_autoreset_matches_gymnasium_sync_vector_env(env_id):
    """The NEXT_STEP contract against gymnasium's own SyncVectorEnv rather than our reading of it:
    same flags and rewards on every step, including the reset steps (reward 0, no flags)."""
    rng = np.random.default_rng(0)
    vec = gym.make_vec(env_id, num_envs=K, vectorization_mode="sync", max_episode_steps=20)
    vec.reset(seed=0)
    nat = envs.NATIVE_ENVS[env_id](K, max_episode_steps=20)
    reset_steps = 0
    for t in range(120):
        if t % 3 == 0:  # wide starts now and then, so that termination happens
            for i, g in enumerate(vec.envs):
                set_gym_start(g, env_id, "wide", rng)
        nat.state = torch.stack([gym_state(g) for g in vec.envs])
        a_nat, _ = random_actions(nat, rng)
        reset_steps += int(nat._ended.sum())
        g_obs, g_rew, g_term, g_trunc, _ = vec.step(a_nat.numpy())
        obs, rew, term, trunc, _ = nat.step(a_nat)
        assert term.tolist() == g_term.tolist() and trunc.tolist() == g_trunc.tolist()
        torch.testing.assert_close(rew, torch.as_tensor(g_rew, dtype=torch.float32), atol=ATOL, rtol=RTOL)
        assert nat.elapsed_steps.tolist() == [g._elapsed_steps for g in vec.envs]
    vec.close()
    assert reset_steps >= K  # every copy went through at least one reset step


def test_autoreset_and_time_limit_batched():
    """Copies end at different times; each restarts on its next step, the others run on."""
    env = envs.NATIVE_ENVS["MountainCar-v0"](3, max_episode_steps=3)
    env.reset(seed=0)
    env.state[0] = torch.tensor([0.49, 0.05])  # reaches the flag on step 1
    push = torch.full((3,), 2)
    _, rew, term, trunc, _ = env.step(push)
    assert term.tolist() == [True, False, False] and not trunc.any() and rew.tolist() == [-1, -1, -1]
    _, rew, term, trunc, _ = env.step(push)
    assert rew.tolist() == [0, -1, -1] and not term.any() and not trunc.any()
    assert env.elapsed_steps.tolist() == [0, 2, 2]
    _, rew, term, trunc, _ = env.step(push)
    assert trunc.tolist() == [False, True, True] and env.elapsed_steps.tolist() == [1, 3, 3]
    _, rew, term, trunc, _ = env.step(push)
    assert rew.tolist() == [-1, 0, 0] and env.elapsed_steps.tolist() == [2, 0, 0]


def test_make_env_backends_and_rollout():
    for env_id, cls in envs.NATIVE_ENVS.items():
        assert isinstance(envs.make_env(env_id, 4), cls)
        assert isinstance(envs.make_env(env_id, 4, backend="torch"), cls)
        gym_env = envs.make_env(env_id, 4, backend="gymnasium")
        assert isinstance(gym_env, envs.GymVectorEnv)
        gym_env.close()
        env = envs.make_env(env_id, 8, seed=0, max_episode_steps=40)
        space = env.single_action_space

        def act(obs):
            if isinstance(space, gym.spaces.Discrete):
                a = torch.randint(space.n, (obs.shape[0],))
            else:
                a = torch.rand(obs.shape[0], *space.shape) * 2 - 1
            return a, torch.zeros(obs.shape[0])

        batch = envs.rollout(env, act, group_size=2, seed=1)
        assert batch.obs.shape[1:] == (8,) + env.single_observation_space.shape
        assert bool((batch.lengths <= 40).all()) and bool((batch.lengths >= 1).all())
        assert torch.equal(batch.s0[0::2], batch.s0[1::2])
        ended = batch.terminated | batch.truncated
        assert bool(ended.all())  # the horizon equals the time limit: every episode ended


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("env_id", IDS)
def test_cuda_matches_cpu(env_id):
    """Same states and actions give the same steps on CUDA as on CPU. (The initial-state draws
    differ: CPU and CUDA generators are different algorithms, so the CPU states are copied over.)"""
    cpu = envs.NATIVE_ENVS[env_id](256, seed=0, max_episode_steps=TIME_LIMIT)
    gpu = envs.NATIVE_ENVS[env_id](256, device="cuda", seed=0, max_episode_steps=TIME_LIMIT)
    assert gpu.reset(seed=1).device.type == "cuda" and gpu.state.device.type == "cuda"
    cpu.reset(seed=1)
    rng = np.random.default_rng(0)
    space = cpu.single_action_space
    for _ in range(200):
        gpu.state = cpu.state.cuda()
        gpu.elapsed_steps, gpu._ended = cpu.elapsed_steps.cuda(), cpu._ended.cuda()
        if isinstance(space, gym.spaces.Discrete):
            a = torch.as_tensor(rng.integers(0, space.n, size=256))
        else:
            a = torch.as_tensor(rng.uniform(space.low[0], space.high[0], size=(256,) + space.shape), dtype=torch.float32)
        reset = cpu._ended.clone()  # rows the autoreset draws afresh differ between devices
        out_c, out_g = cpu.step(a), gpu.step(a.cuda())
        for x, y in zip(out_c[:4], out_g[:4]):
            y = y.cpu()
            if x.dim() == 2:
                torch.testing.assert_close(x[~reset], y[~reset], atol=ATOL, rtol=RTOL)
            else:
                torch.testing.assert_close(x, y, atol=ATOL, rtol=RTOL)


def test_gymnasium_backend_groups_and_fresh_states_per_seed():
    """GymVectorEnv: G copies of a group share s0, groups differ, and the next update's seed (seed + 1)
    does not replay the previous update's groups shifted by one (as seeding group g with seed + g did)."""
    env = envs.make_env("CartPole-v1", 8, backend="gymnasium")
    a = env.reset(seed=5, group_size=4)
    b = env.reset(seed=6, group_size=4)
    assert torch.equal(a[0], a[3]) and torch.equal(a[4], a[7]) and not torch.equal(a[0], a[4])
    assert not any(torch.equal(x, y) for x in a[::4] for y in b[::4])
    assert torch.equal(a, env.reset(seed=5, group_size=4))   # the same seed, the same states


def test_rollout_draws_the_autoreset_states_a_step_would():
    """rollout draws a chunk's autoreset states at once (autoreset_states): the same numbers, in the
    same order, as step() drawing them one step at a time."""
    a, b = (envs.NATIVE_ENVS["MountainCar-v0"](4, seed=3) for _ in range(2))
    ahead = a.autoreset_states(5)                                          # [5, 4, 2]
    assert torch.equal(ahead, torch.stack([b._sample_initial(4) for _ in range(5)]))


def test_compiled_rollout_matches_eager():
    """compile=True runs the same steps as one compiled program per chunk: on a task env (the path
    sppo.py --compile takes) the same actions and flags, observations and log-probs equal to float
    rounding. (The eager steps are checked against gymnasium above.)"""
    import sppo
    env = envs.make_task("mountaincar", 8, seed=0, horizon=40)
    actor = sppo.Actor(2, env.single_action_space)
    runs = []
    for compile in (False, True):
        torch.manual_seed(0)
        runs.append(envs.rollout(env, actor.act, seed=1, check_every=8, compile=compile))
    eager, compiled = runs
    for field in ("actions", "step_mask", "terminated", "truncated", "success", "rewards", "s0"):
        assert torch.equal(getattr(eager, field), getattr(compiled, field)), field
    torch.testing.assert_close(compiled.obs, eager.obs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled.logp, eager.logp, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="native"):
        envs.rollout(envs.make_env("MountainCar-v0", 2, backend="gymnasium"), actor.act, compile=True)
