"""Native torch environments: gymnasium 1.4's classic-control physics for B copies at once.

CartPole, MountainCar, MountainCarContinuous, Pendulum and Acrobot, written as tensor operations so
that B copies step together on any device (64k to 1M copies on a GPU, results/gpu.md). They match
gymnasium step for step (tests/test_envs_native.py: float64 to 5e-14). envs.make_env picks them for
these ids; every other id runs through gymnasium itself.

Usage:
    from torch_envs import NATIVE_ENVS
    env = NATIVE_ENVS["CartPole-v1"](num_envs=1024, device="cuda", seed=0)
    obs = env.reset(seed=0)
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

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
