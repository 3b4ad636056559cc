"""Batched control environments with torch tensors in and out, and the episode-mode rollout.

Sequence-Level PPO treats a whole episode as ONE action of a contextual bandit, exactly as an LLM
trainer treats a whole response. This file is where that view is made concrete:

    control (this file)                LLM (llm_demo.py)
    --------------------------------   ---------------------------------
    initial state s0        [B, obs]   prompt                 [B, prompt_len]
    episode                            response
    step t                             token t
    step_mask               [T, B]     response mask          [T, B]
    outcome R (return or success) [B]  verifiable reward (1 if correct) [B]

Two kinds of environment sit behind one interface (`make_env`):
  * native torch environments (CartPole, MountainCar, Pendulum, Acrobot): the physics of B copies is
    a handful of tensor operations per step, on any device;
  * gymnasium's own vector API for every other installed id (LunarLander, Hopper, ...), converted to
    torch at the boundary.
Both follow gymnasium 1.x's vector conventions, including its autoreset rule (NEXT_STEP): the step
AFTER an episode ends resets that copy and returns its new first observation with reward 0. The
episode-mode rollout below never uses a step after an episode ends -- those are padding, masked out.

Usage:
    env = make_env("CartPole-v1", num_envs=64, device="cpu", seed=0)
    batch = rollout(env, policy.act, horizon=500, group_size=1, seed=0)
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch


class EnvError(ValueError):
    """A problem the user can fix (unknown id, missing extra, bad size): reported in one line."""


# ------------------------------------------------------------------------------------------------
# Success predicates: the binary, verifiable outcome judged at the END of an episode (notes §5).
# Each takes the final observation [B, obs], terminated [B] and truncated [B] (bool tensors) and
# returns success [B] (bool). Ids without one report no success rate and cannot use --reward success.
# ------------------------------------------------------------------------------------------------
SUCCESS = {
    # balanced until the time limit, i.e. the episode was cut by truncation, not ended by a fall
    "CartPole-v1": lambda obs, term, trunc: trunc & ~term,
    # reached the flag: gymnasium terminates exactly when x >= goal
    "MountainCar-v0": lambda obs, term, trunc: term,
    "MountainCarContinuous-v0": lambda obs, term, trunc: term,
    # swung the free end above the bar: gymnasium terminates exactly then
    "Acrobot-v1": lambda obs, term, trunc: term,
    # upright at the end: obs[0] = cos(theta), theta = 0 is up
    "Pendulum-v1": lambda obs, term, trunc: obs[:, 0] > 0.8,
    # both legs touch the ground and the lander is within the pad (obs[0] is x, obs[6:8] are legs)
    "LunarLander-v3": lambda obs, term, trunc: (obs[:, 6] > 0.5) & (obs[:, 7] > 0.5) & (obs[:, 0].abs() < 0.4),
}

# pip extras that provide the environments of a gymnasium family (named in the error message)
_EXTRAS = {"box2d": "gymnasium[box2d]", "mujoco": "gymnasium[mujoco]", "atari": "gymnasium[atari]"}


# ------------------------------------------------------------------------------------------------
# gymnasium's vector API behind the torch interface
# ------------------------------------------------------------------------------------------------
class GymVectorEnv:
    """gymnasium.vector.{Sync,Async}VectorEnv with torch tensors in and out.

    reset(seed, group_size) -> obs [B, obs_dim]
    step(actions [B] or [B, act_dim]) -> obs [B, obs_dim], reward [B], terminated [B], truncated [B], info
    """

    def __init__(self, env_id: str, num_envs: int, device: str = "cpu", max_episode_steps: int | None = None,
                 vectorization_mode: str = "sync"):
        kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        self.env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization_mode, **kwargs)
        self.env_id, self.num_envs, self.device = env_id, num_envs, torch.device(device)
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.max_episode_steps = max_episode_steps or gym.spec(env_id).max_episode_steps

    def reset(self, seed: int | None = None, group_size: int = 1) -> torch.Tensor:
        # Copies share an initial state iff they are seeded alike: one seed per group, drawn from `seed`
        # (not seed + g: consecutive calls with seed and seed + 1 would then repeat most groups' states).
        seeds = None
        if seed is not None:
            if self.num_envs % group_size:
                raise ValueError(f"num_envs={self.num_envs} is not divisible by group_size={group_size}")
            group_seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=self.num_envs // group_size)
            seeds = [int(s) for s in np.repeat(group_seeds, group_size)]
        obs, _ = self.env.reset(seed=seeds)
        return self._tensor(obs)

    def step(self, actions: torch.Tensor):
        obs, reward, terminated, truncated, info = self.env.step(actions.cpu().numpy())
        return (self._tensor(obs), self._tensor(reward), torch.as_tensor(terminated, device=self.device),
                torch.as_tensor(truncated, device=self.device), info)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

    def close(self):
        self.env.close()


# ------------------------------------------------------------------------------------------------
# Native torch environments: gymnasium 1.4's classic-control physics for B copies at once.
#
# Each class below is only its physics: initial-state ranges, `_dynamics` and `_obs`. The shared base
# class does the bookkeeping that gymnasium splits over TimeLimit and the vector env: seeding, group
# resets, the time limit and the NEXT_STEP autoreset. Everything is float32 tensors on `device`;
# per-copy branches are torch.where, so a step never waits on the host (no .item(), no loops).
# ------------------------------------------------------------------------------------------------
class TorchVectorEnv:
    """B copies of one environment, stepped together as tensors.

    state [B, d]: the physical state in gymnasium's own layout (readable and settable by callers).
    elapsed_steps [B] (long): steps since each copy's last reset, for the time limit.
    reset(seed, group_size) -> obs [B, obs_dim]
    step(actions [B] long, or [B, act_dim] float) -> obs [B, obs_dim], reward [B], terminated [B],
        truncated [B], info {}

    Autoreset (gymnasium 1.x vector NEXT_STEP): a copy whose episode ended (terminated or truncated)
    on step k is reset on step k+1. That step ignores the copy's action and returns its new first
    observation with reward 0, terminated False and truncated False. So the last observation of an
    episode is always seen by the caller, and the step after it is padding.
    """
    env_id: str
    single_observation_space: gym.spaces.Space
    single_action_space: gym.spaces.Space
    init_low: list[float]   # gymnasium's initial states: uniform in [init_low, init_high] per component
    init_high: list[float]

    def __init__(self, num_envs: int, device="cpu", seed: int = 0, max_episode_steps: int | None = None):
        self.num_envs, self.device = num_envs, torch.device(device)
        self.max_episode_steps = max_episode_steps or gym.spec(self.env_id).max_episode_steps
        # the generator lives on the device, so initial states are drawn where they are used
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        # kept on the device: building them from lists at every reset would copy host -> device
        self._init_low = torch.tensor(self.init_low, dtype=torch.float32, device=self.device)
        self._init_span = torch.tensor(self.init_high, dtype=torch.float32, device=self.device) - self._init_low
        self.elapsed_steps = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._ended = torch.zeros(num_envs, dtype=torch.bool, device=self.device)  # reset on next step
        self.reset()  # a valid `state` from the start; the first states equal those of reset(seed=seed)

    def _sample_initial(self, n: int) -> torch.Tensor:
        """n initial states [n, d], uniform in gymnasium's ranges, from this env's generator."""
        u = torch.rand(n, self._init_low.shape[0], generator=self.generator, device=self.device)
        return self._init_low + self._init_span * u

    def autoreset_states(self, k: int) -> torch.Tensor:
        """The states [k, B, d] that the next k steps reset ended copies to, drawn at once: the same
        numbers as k calls of step() would draw one by one (rollout passes them back as `fresh`)."""
        return self._sample_initial(k * self.num_envs).view(k, self.num_envs, -1)

    def reset(self, seed: int | None = None, group_size: int = 1) -> torch.Tensor:
        """Start every copy afresh; each consecutive group of `group_size` copies shares one s0."""
        if self.num_envs % group_size != 0:
            raise ValueError(f"num_envs={self.num_envs} is not divisible by group_size={group_size}")
        if seed is not None:
            self.generator.manual_seed(seed)
        s0 = self._sample_initial(self.num_envs // group_size)
        self.state = s0.repeat_interleave(group_size, dim=0)
        self.elapsed_steps.zero_()
        self._ended.zero_()
        return self._obs(self.state)

    def step(self, actions: torch.Tensor, fresh: torch.Tensor | None = None):
        """Advance all B copies one step; copies whose episode ended on the previous step are reset
        instead (NEXT_STEP, see the class docstring). fresh [B, d]: the states they reset to, drawn
        here from the env's generator unless given (a row of `autoreset_states`, as rollout does)."""
        if fresh is None:
            fresh = self._sample_initial(self.num_envs)
        state, reward, terminated = self._dynamics(self.state, actions.to(self.device))
        self.elapsed_steps = self.elapsed_steps + 1
        # gymnasium's TimeLimit: truncation is judged independently of termination (both may be True)
        truncated = self.elapsed_steps >= self.max_episode_steps
        # NEXT_STEP autoreset. Fresh states for all B copies, of which the ended ones are kept, cost a
        # little arithmetic but no host sync (indexing only the ended copies would need their count).
        r = self._ended
        state = torch.where(r[:, None], fresh, state)
        reward = torch.where(r, 0.0, reward)
        terminated, truncated = terminated & ~r, truncated & ~r
        self.elapsed_steps = torch.where(r, 0, self.elapsed_steps)
        self.state, self._ended = state, terminated | truncated
        return self._obs(state), reward, terminated, truncated, {}

    # the physics, per environment -------------------------------------------------------------
    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor):
        """state [B, d], actions [B] or [B, act_dim] -> next state [B, d], reward [B], terminated [B]."""
        raise NotImplementedError

    def _obs(self, state: torch.Tensor) -> torch.Tensor:  # -> obs [B, obs_dim]
        return state.clone()  # a copy, so a caller editing `state` cannot change an observation

    def close(self):
        pass


class CartPole(TorchVectorEnv):
    """CartPole-v1. state = obs = [x, x_dot, theta, theta_dot]; action 0 pushes left, 1 right.
    Reward 1 on every step (the falling one included); terminates when |x| > 2.4 or |theta| > 12 deg."""
    env_id = "CartPole-v1"
    gravity, mass_cart, mass_pole, half_length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass, polemass_length = mass_pole + mass_cart, mass_pole * half_length
    theta_threshold, x_threshold = 12 * 2 * math.pi / 360, 2.4
    _high = np.array([x_threshold * 2, np.inf, theta_threshold * 2, np.inf], dtype=np.float32)
    single_observation_space = gym.spaces.Box(-_high, _high, dtype=np.float32)
    single_action_space = gym.spaces.Discrete(2)
    init_low, init_high = [-0.05] * 4, [0.05] * 4

    def _dynamics(self, state, actions):
        x, x_dot, theta, theta_dot = state.unbind(1)
        force = torch.where(actions == 1, self.force_mag, -self.force_mag)
        cos, sin = torch.cos(theta), torch.sin(theta)
        # the equations of motion of Barto, Sutton & Anderson (1983), pole as a rigid rod
        temp = (force + self.polemass_length * theta_dot ** 2 * sin) / self.total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.half_length * (4.0 / 3.0 - self.mass_pole * cos ** 2 / self.total_mass))
        x_acc = temp - self.polemass_length * theta_acc * cos / self.total_mass
        # explicit Euler: positions advance with the OLD velocities (gymnasium's "euler" integrator)
        state = torch.stack([x + self.tau * x_dot, x_dot + self.tau * x_acc,
                             theta + self.tau * theta_dot, theta_dot + self.tau * theta_acc], dim=1)
        terminated = (state[:, 0].abs() > self.x_threshold) | (state[:, 2].abs() > self.theta_threshold)
        return state, torch.ones_like(x), terminated


class MountainCar(TorchVectorEnv):
    """MountainCar-v0. state = obs = [position, velocity]; action 0 push left, 1 none, 2 push right.
    Reward -1 per step; terminates when position >= 0.5 (the flag) with velocity >= 0.
    The engine (`_push`) and the reward are methods so that the continuous version can swap them."""
    env_id = "MountainCar-v0"
    min_position, max_position, max_speed, goal_position, gravity = -1.2, 0.6, 0.07, 0.5, 0.0025
    single_observation_space = gym.spaces.Box(np.array([min_position, -max_speed], np.float32),
                                              np.array([max_position, max_speed], np.float32), dtype=np.float32)
    single_action_space = gym.spaces.Discrete(3)
    init_low, init_high = [-0.6, 0.0], [-0.4, 0.0]  # at rest somewhere in the valley

    def _push(self, actions):  # [B] velocity change from the engine
        return (actions - 1) * 0.001

    def _reward(self, actions, terminated):
        return torch.full(terminated.shape, -1.0, device=self.device)

    def _dynamics(self, state, actions):
        position, velocity = state.unbind(1)
        # the car rides on the curve y = sin(3x): gravity pulls along the slope with cos(3x)
        velocity = velocity + self._push(actions) - self.gravity * torch.cos(3 * position)
        velocity = velocity.clamp(-self.max_speed, self.max_speed)
        position = (position + velocity).clamp(self.min_position, self.max_position)
        # the left wall is inelastic: hitting it stops the car
        velocity = torch.where((position <= self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= 0)
        return torch.stack([position, velocity], dim=1), self._reward(actions, terminated), terminated


class MountainCarContinuous(MountainCar):
    """MountainCarContinuous-v0: as MountainCar, but a force in [-1, 1] ([B, 1]), the flag at 0.45,
    and reward 100 on reaching it minus 0.1 * action^2 on every step."""
    env_id = "MountainCarContinuous-v0"
    goal_position, power = 0.45, 0.0015
    single_action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def _push(self, actions):
        return actions.reshape(self.num_envs, -1)[:, 0].clamp(-1.0, 1.0) * self.power

    def _reward(self, actions, terminated):
        # gymnasium clips the action for the physics but charges the energy of the UNCLIPPED action
        a = actions.reshape(self.num_envs, -1)[:, 0].float()
        return 100.0 * terminated.float() - 0.1 * a ** 2


class Pendulum(TorchVectorEnv):
    """Pendulum-v1. state = [theta, theta_dot] (theta = 0 upright, never wrapped);
    obs = [cos theta, sin theta, theta_dot]; action = torque [B, 1] in [-2, 2].
    Reward -(theta^2 + 0.1 theta_dot^2 + 0.001 u^2) of the state BEFORE the step, theta wrapped
    to [-pi, pi); never terminates, only truncates."""
    env_id = "Pendulum-v1"
    max_speed, max_torque, dt, g, m, l = 8.0, 2.0, 0.05, 10.0, 1.0, 1.0
    single_observation_space = gym.spaces.Box(-np.array([1.0, 1.0, max_speed], np.float32),
                                              np.array([1.0, 1.0, max_speed], np.float32), dtype=np.float32)
    single_action_space = gym.spaces.Box(-max_torque, max_torque, shape=(1,), dtype=np.float32)
    init_low, init_high = [-math.pi, -1.0], [math.pi, 1.0]

    def _dynamics(self, state, actions):
        theta, theta_dot = state.unbind(1)
        u = actions.reshape(self.num_envs, -1)[:, 0].clamp(-self.max_torque, self.max_torque)
        # remainder (not fmod) keeps the sign of the divisor, like numpy's %: the result is in [-pi, pi)
        angle = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi
        cost = angle ** 2 + 0.1 * theta_dot ** 2 + 0.001 * u ** 2
        # semi-implicit Euler: the angle advances with the NEW (clipped) velocity
        theta_acc = 3 * self.g / (2 * self.l) * torch.sin(theta) + 3.0 / (self.m * self.l ** 2) * u
        theta_dot = theta_dot + theta_acc * self.dt
        theta_dot = theta_dot.clamp(-self.max_speed, self.max_speed)
        theta = theta + theta_dot * self.dt
        return torch.stack([theta, theta_dot], dim=1), -cost, torch.zeros_like(theta, dtype=torch.bool)

    def _obs(self, state):
        return torch.stack([torch.cos(state[:, 0]), torch.sin(state[:, 0]), state[:, 1]], dim=1)


class Acrobot(TorchVectorEnv):
    """Acrobot-v1. state = [theta1, theta2, dtheta1, dtheta2] (theta1 = 0 hanging down, theta2
    relative to link 1); obs = [cos t1, sin t1, cos t2, sin t2, dt1, dt2]; action 0, 1, 2 = torque
    -1, 0, +1 on the middle joint. Reward -1 per step, 0 on the step that lifts the free end more than
    one link length above the pivot, which terminates."""
    env_id = "Acrobot-v1"
    dt, m1, m2, l1, lc1, lc2, I1, I2, g = 0.2, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 9.8
    max_vel_1, max_vel_2 = 4 * math.pi, 9 * math.pi
    _high = np.array([1.0, 1.0, 1.0, 1.0, max_vel_1, max_vel_2], dtype=np.float32)
    single_observation_space = gym.spaces.Box(-_high, _high, dtype=np.float32)
    single_action_space = gym.spaces.Discrete(3)
    init_low, init_high = [-0.1] * 4, [0.1] * 4

    def _dsdt(self, s, torque):
        """Time derivative [B, 4] of s [B, 4] (Sutton & Barto's "book" equations, as gymnasium)."""
        t1, t2, dt1, dt2 = s.unbind(1)
        m1, m2, l1, lc1, lc2, I1, I2, g = self.m1, self.m2, self.l1, self.lc1, self.lc2, self.I1, self.I2, self.g
        d1 = m1 * lc1 ** 2 + m2 * (l1 ** 2 + lc2 ** 2 + 2 * l1 * lc2 * torch.cos(t2)) + I1 + I2
        d2 = m2 * (lc2 ** 2 + l1 * lc2 * torch.cos(t2)) + I2
        phi2 = m2 * lc2 * g * torch.cos(t1 + t2 - math.pi / 2)
        phi1 = (-m2 * l1 * lc2 * dt2 ** 2 * torch.sin(t2) - 2 * m2 * l1 * lc2 * dt2 * dt1 * torch.sin(t2)
                + (m1 * lc1 + m2 * l1) * g * torch.cos(t1 - math.pi / 2) + phi2)
        ddt2 = ((torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dt1 ** 2 * torch.sin(t2) - phi2)
                / (m2 * lc2 ** 2 + I2 - d2 ** 2 / d1))
        ddt1 = -(d2 * ddt2 + phi1) / d1
        return torch.stack([dt1, dt2, ddt1, ddt2], dim=1)

    def _dynamics(self, state, actions):
        torque = (actions - 1).float()
        # one classical Runge-Kutta 4 step over dt; the torque is held constant within the step
        k1 = self._dsdt(state, torque)
        k2 = self._dsdt(state + self.dt / 2 * k1, torque)
        k3 = self._dsdt(state + self.dt / 2 * k2, torque)
        k4 = self._dsdt(state + self.dt * k3, torque)
        s = state + self.dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        # only after the whole RK4 step: angles wrapped into [-pi, pi), velocities clipped. (gymnasium's
        # wrap loop leaves exactly +pi alone where remainder gives -pi: the same angle, the same obs.)
        angles = torch.remainder(s[:, :2] + math.pi, 2 * math.pi) - math.pi
        s = torch.cat([angles, s[:, 2:3].clamp(-self.max_vel_1, self.max_vel_1),
                       s[:, 3:4].clamp(-self.max_vel_2, self.max_vel_2)], dim=1)
        # height of the free end below the pivot is cos(t1) + cos(t1 + t2) (link lengths 1)
        terminated = -torch.cos(s[:, 0]) - torch.cos(s[:, 0] + s[:, 1]) > 1.0
        return s, terminated.float() - 1.0, terminated

    def _obs(self, s):
        return torch.stack([torch.cos(s[:, 0]), torch.sin(s[:, 0]), torch.cos(s[:, 1]), torch.sin(s[:, 1]),
                            s[:, 2], s[:, 3]], dim=1)


NATIVE_ENVS: dict[str, type] = {cls.env_id: cls for cls in (CartPole, MountainCar, MountainCarContinuous,
                                                            Pendulum, Acrobot)}


def make_env(env_id: str, num_envs: int, device: str = "cpu", seed: int = 0, backend: str = "auto",
             max_episode_steps: int | None = None):
    """Build B = num_envs copies of `env_id` behind the torch interface.

    backend: "torch" (native, ids in NATIVE_ENVS), "gymnasium" (any installed id) or "auto" (native
    where there is one). max_episode_steps overrides the id's time limit (the horizon H).
    Raises EnvError with a one-line, actionable message for anything the user can fix.
    """
    if num_envs < 1:
        raise EnvError(f"num_envs must be >= 1, got {num_envs}")
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.registry for installed ids"
        raise EnvError(f"unknown environment id '{env_id}'{hint}")
    if backend not in ("auto", "torch", "gymnasium"):
        raise EnvError(f"backend must be auto, torch or gymnasium, got '{backend}'")
    if backend == "torch" and env_id not in NATIVE_ENVS:
        raise EnvError(f"no native torch version of '{env_id}' (have: {', '.join(NATIVE_ENVS)}); "
                       "use --backend gymnasium")
    if backend != "gymnasium" and env_id in NATIVE_ENVS:
        return NATIVE_ENVS[env_id](num_envs, device=device, seed=seed, max_episode_steps=max_episode_steps)
    try:
        return GymVectorEnv(env_id, num_envs, device=device, max_episode_steps=max_episode_steps)
    except gym.error.DependencyNotInstalled as e:
        entry_point = str(gym.spec(env_id).entry_point)   # e.g. gymnasium.envs.box2d.lunar_lander:LunarLander
        family = entry_point.split(".")[2] if "envs." in entry_point else ""
        extra = _EXTRAS.get(family, "the package it names")
        raise EnvError(f"'{env_id}' needs an extra that is not installed: pip install \"{extra}\" ({e})") from None
    except ImportError as e:   # e.g. the phys2d/ ids need jax, which no gymnasium extra of ours installs
        raise EnvError(f"'{env_id}' needs the package '{e.name}', which is not installed: pip install {e.name}") from None


# ------------------------------------------------------------------------------------------------
# Episode-mode rollout: B whole episodes, one per env copy, padded to a common length T.
# ------------------------------------------------------------------------------------------------
@dataclass
class Episodes:
    """A batch of B whole episodes (LLM: B responses), time-major like a token batch.

    obs [T, B, obs_dim]  actions [T, B] or [T, B, act_dim]  logp [T, B]  rewards [T, B]
    step_mask [T, B] (1.0 on real steps, 0.0 on padding after the episode ended)
    s0 [B, obs_dim] (the "prompt")  final_obs [B, obs_dim] (the observation after the last real step)
    terminated [B], truncated [B] (how each episode ended; neither = cut by the rollout horizon)
    success [B] (bool, or None when the task has no success predicate)
    """
    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    rewards: torch.Tensor
    step_mask: torch.Tensor
    s0: torch.Tensor
    final_obs: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    success: torch.Tensor | None

    @property
    def lengths(self) -> torch.Tensor:  # [B] number of real steps per episode
        return self.step_mask.sum(0)

    @property
    def returns(self) -> torch.Tensor:  # [B] undiscounted episode return
        return (self.rewards * self.step_mask).sum(0)


def _steps(env, act, obs: torch.Tensor, k: int, fresh: torch.Tensor | None) -> dict:
    """k consecutive steps of act + env.step from obs [B, obs_dim]; each output stacked over the k
    steps: obs [k, B, obs_dim] (the observation AFTER each step), actions [k, B(, act_dim)], logp,
    rewards, terminated, truncated [k, B], success [k, B] (task envs only). fresh [k, B, d]: the
    native env's autoreset states for these steps (None for gymnasium envs, which draw their own)."""
    out = {key: [] for key in ("obs", "actions", "logp", "rewards", "terminated", "truncated", "success")}
    for i in range(k):
        action, logp = act(obs)
        obs, reward, term, trunc, info = env.step(action) if fresh is None else env.step(action, fresh=fresh[i])
        for key, x in zip(out, (obs, action, logp, reward, term, trunc, info.get("success"))):
            out[key].append(x)
    return {key: torch.stack(xs) if xs[0] is not None else None for key, xs in out.items()}


# torch.compile of _steps, built on first use. Each step is ~40 small tensor operations on [B, ...]:
# eagerly every one of them pays Python and dispatch overhead (~4 us), so a step costs ~300 us whatever
# B is. Compiled, the check_every steps of a chunk become one C++ program (cpp_wrapper: no Python
# between its kernels). fallback_random: its random numbers come from torch's own generator, exactly
# as in eager mode, so a seed samples the same actions either way.
_compiled_steps = None


def compiled_steps():
    global _compiled_steps
    if _compiled_steps is None:
        _compiled_steps = torch.compile(_steps, dynamic=False, options={"cpp_wrapper": True, "fallback_random": True})
    return _compiled_steps


@torch.no_grad()
def rollout(env, act, horizon: int | None = None, group_size: int = 1, seed: int | None = None,
            check_every: int = 16, compile: bool = False) -> Episodes:
    """Run one episode in each of the env's B copies, to its end or to `horizon` steps.

    act(obs [B, obs_dim]) -> (action [B] or [B, act_dim], logp [B]) samples from the current policy.
    group_size G > 1 starts each consecutive group of G copies from one shared initial state (for
    GRPO/RLOO: G "responses" to the same "prompt").

    Everything stays on env.device. The steps run in chunks of `check_every`; between chunks, the only
    host synchronisation, an `any episode still running?` test, lets a batch of short episodes stop
    before the horizon. compile=True (native envs only) runs each whole chunk as one compiled program:
    the first rollout pays the compilation (tens of seconds on a CPU; torch caches it on disk), then a
    step costs ~10x less; actions are the same, observations agree to float rounding (~1e-5).
    """
    horizon = horizon or env.max_episode_steps
    s0 = obs = env.reset(seed=seed, group_size=group_size)
    # a native env's autoreset states are drawn here, a chunk at a time: torch.compile cannot trace
    # the env's torch.Generator, and drawing k rows at once gives the numbers k single draws would
    draw = getattr(env, "autoreset_states", None)
    if compile and draw is None:
        raise ValueError(f"compile=True needs a native torch env; {getattr(env, 'env_id', env)} is not one")
    ever_ended = torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)
    chunks = []
    for start in range(0, horizon, check_every):
        k = min(check_every, horizon - start)
        # a shorter last chunk runs eagerly rather than compiling a second program for it
        steps = compiled_steps() if compile and k == check_every else _steps
        chunk = steps(env, act, obs, k, None if draw is None else draw(k))
        chunks.append(chunk)
        obs = chunk["obs"][-1]
        ever_ended |= (chunk["terminated"] | chunk["truncated"]).any(0)
        if bool(ever_ended.all()):
            break
    # one tensor per output over all steps taken: obs [T, B, obs_dim], the others [T, B(, act_dim)]
    run = {key: None if chunks[0][key] is None else torch.cat([c[key] for c in chunks]) for key in chunks[0]}
    # The step mask is derived after the fact, as an LLM's response mask is from the first EOS: a step
    # is real iff no episode end came before it. Steps after the end belong to the autoreset copy.
    term, trunc = run["terminated"], run["truncated"]                      # [T, B]
    ended = term | trunc
    step_mask = ((ended.cumsum(0) - ended.long()) == 0).float()            # [T, B]
    last = (step_mask.sum(0).long() - 1)[None]                             # [1, B] index of the last real step
    final_obs = run["obs"].gather(0, last[..., None].expand(1, *run["obs"].shape[1:]))[0]
    terminated = term.gather(0, last)[0]
    truncated = trunc.gather(0, last)[0] & ~terminated
    cut = ~(terminated | truncated)   # still running at the horizon: neither flag; the caller bootstraps it
    success_fn = SUCCESS.get(getattr(env, "env_id", ""))
    if run["success"] is not None:   # a task env (control_tasks.py) judges success on the step an episode ends;
        success = run["success"].gather(0, last)[0] & ~cut   # one still running at the horizon has not succeeded
    else:
        success = None if success_fn is None else success_fn(final_obs, terminated, truncated | cut)
    # obs[t] is the observation the action of step t was chosen from: s0, then those after each step
    return Episodes(obs=torch.cat([s0[None], run["obs"][:-1]]), actions=run["actions"], logp=run["logp"],
                    rewards=run["rewards"], step_mask=step_mask, s0=s0, final_obs=final_obs,
                    terminated=terminated, truncated=truncated, success=success)
