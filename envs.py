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
  * native torch environments (torch_envs.py: CartPole, MountainCar, Pendulum, Acrobot): the physics
    of B copies is a handful of tensor operations per step, on any device;
  * gymnasium's own vector API for every other installed id (LunarLander, Hopper, ...), converted to
    torch at the boundary.
Both follow gymnasium 1.x's vector conventions, including its autoreset rule (NEXT_STEP): the step
AFTER an episode ends resets that copy and returns its new first observation with reward 0. The
episode-mode rollout below never uses a step after an episode ends -- those are padding, masked out.
The paper's five control tasks (`make_task`) are such environments with a 0/1 outcome as reward.

Usage:
    env = make_env("CartPole-v1", num_envs=64, device="cpu", seed=0)
    batch = rollout(env, policy.act, horizon=500, group_size=1, seed=0)
    env = make_task("mountaincar", num_envs=8)          # 1.0 on the last step if the car reached the flag
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from torch_envs import NATIVE_ENVS


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

# gymnasium's pip extras, named in the error messages: by the family of its own envs (gymnasium.envs.<family>),
# by a Python module an env imports, and by a namespace that a package registers when it is imported
_FAMILY_EXTRAS = {"box2d": "gymnasium[box2d]", "mujoco": "gymnasium[mujoco]", "classic_control": "gymnasium[classic-control]",
                  "toy_text": "gymnasium[toy-text]", "phys2d": "gymnasium[jax]", "tabular": "gymnasium[jax]"}
_MODULE_EXTRAS = {"Box2D": "gymnasium[box2d]", "mujoco": "gymnasium[mujoco]", "pygame": "gymnasium[classic-control]",
                  "ale_py": "gymnasium[atari]", "jax": "gymnasium[jax]", "jaxlib": "gymnasium[jax]", "flax": "gymnasium[jax]",
                  "cv2": "gymnasium[other]", "moviepy": "gymnasium[other]"}
_NAMESPACES = {"ALE": ("ale_py", "gymnasium[atari]")}


def spec(env_id: str):
    """gymnasium's EnvSpec of `env_id`, in each form gymnasium.make accepts: "Name-vN", "Namespace/Name-vN"
    and "module:Name-vN" (the module is imported first; importing it registers the id). A namespace that a
    package registers when imported (ALE/: ale-py) is imported the same way where the package is installed.
    Raises EnvError with gymnasium's own reason and, where there is one, the pip extra."""
    module, _, name = env_id.rpartition(":")
    namespace = name.split("/")[0] if "/" in name else None
    if not module and namespace in _NAMESPACES and importlib.util.find_spec(_NAMESPACES[namespace][0]) is not None:
        module = _NAMESPACES[namespace][0]
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise EnvError(f"'{env_id}' names the module '{module}', which cannot be imported ({e}); install it "
                           "or add its folder to PYTHONPATH") from None
    try:
        return gym.spec(name)
    except gym.error.Error as e:
        close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if namespace in _NAMESPACES:
            package, extra = _NAMESPACES[namespace]
            hint += f"; the {namespace}/ ids come with {package}: pip install \"{extra}\""
        hint = hint or "; gymnasium.pprint_registry() lists the installed ids"
        raise EnvError(f"unknown environment id '{env_id}': {str(e).rstrip('.')}{hint}") from None   # gymnasium's words


def check_spaces(env_id: str, observation_space, action_space) -> None:
    """The spaces the torch interface carries; EnvError for any other. The actor (sppo.Actor) reads a
    vector and samples a categorical (Discrete) or a Gaussian (float Box) action."""
    spaces = gym.spaces
    if not (isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 1
            or isinstance(observation_space, spaces.Discrete)):
        raise EnvError(f"'{env_id}' observes {observation_space}: the policies here read a vector, a Box of one "
                       "dimension or a Discrete state (given one-hot); images and other spaces are not supported")
    if not (isinstance(action_space, spaces.Discrete) or isinstance(action_space, spaces.Box)
            and np.issubdtype(action_space.dtype, np.floating)):
        raise EnvError(f"'{env_id}' acts in {action_space}: the policies here sample a Discrete action (categorical) "
                       "or a float Box action (Gaussian); other action spaces are not supported")


# ------------------------------------------------------------------------------------------------
# gymnasium's vector API behind the torch interface
# ------------------------------------------------------------------------------------------------
class GymVectorEnv:
    """gymnasium.vector.{Sync,Async}VectorEnv with torch tensors in and out.

    reset(seed, group_size) -> obs [B, obs_dim]
    step(actions [B] or [B, act_dim]) -> obs [B, obs_dim], reward [B], terminated [B], truncated [B], info
    The spaces (check_spaces refuses the rest): observations a Box of one dimension, or Discrete, given as
    one-hot rows [B, n]; actions Discrete (0..n-1 here, shifted to the space's `start` for the env) or a float
    Box of any shape (flat [B, act_dim] here, reshaped for the env).
    """

    def __init__(self, env_id: str, num_envs: int, device: str = "cpu", max_episode_steps: int | None = None,
                 vectorization_mode: str = "sync"):
        registered = spec(env_id)   # imports the module a "module:Name-vN" id names, which registers the id
        kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        self.env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization_mode, **kwargs)
        # the id as gymnasium registered it (without a "module:" prefix): success predicates are looked up by it
        self.env_id, self.num_envs, self.device = registered.id, num_envs, torch.device(device)
        try:
            check_spaces(env_id, self.env.single_observation_space, self.env.single_action_space)
        except EnvError:
            self.env.close()
            raise
        self.discrete_obs = isinstance(self.env.single_observation_space, gym.spaces.Discrete)
        self.single_observation_space = (gym.spaces.flatten_space(self.env.single_observation_space) if self.discrete_obs
                                         else self.env.single_observation_space)
        self.single_action_space = self.env.single_action_space
        self.max_episode_steps = max_episode_steps or registered.max_episode_steps

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
        return self._obs(obs)

    def step(self, actions: torch.Tensor):
        actions, space = actions.cpu().numpy(), self.single_action_space
        if isinstance(space, gym.spaces.Discrete):
            actions = actions + int(space.start) if space.start else actions
        else:
            actions = actions.reshape(len(actions), *space.shape)   # the Gaussian's flat sample, in the env's shape
        obs, reward, terminated, truncated, info = self.env.step(actions)
        return (self._obs(obs), self._tensor(reward), torch.as_tensor(terminated, device=self.device),
                torch.as_tensor(truncated, device=self.device), info)

    def _obs(self, obs: np.ndarray) -> torch.Tensor:
        if self.discrete_obs:   # state k of a Discrete space -> the one-hot row e_k
            space = self.env.single_observation_space
            obs = np.eye(int(space.n), dtype=np.float32)[np.asarray(obs) - int(space.start)]
        return self._tensor(obs)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

    def close(self):
        self.env.close()



def make_env(env_id: str, num_envs: int, device: str = "cpu", seed: int = 0, backend: str = "auto",
             max_episode_steps: int | None = None):
    """Build B = num_envs copies of `env_id` behind the torch interface.

    backend: "torch" (native, ids in NATIVE_ENVS), "gymnasium" (any installed id, in any form gymnasium.make
    accepts, "module:Name-vN" included) or "auto" (native where there is one). max_episode_steps overrides
    the id's time limit (the horizon H). Raises EnvError with a one-line, actionable message for anything
    the user can fix: an unknown id or a missing package (gymnasium's reason, the pip extra), a space the
    policies cannot carry (check_spaces), a seed outside 0 .. 2**64 - 1.
    """
    if num_envs < 1:
        raise EnvError(f"num_envs must be >= 1, got {num_envs}")
    if not 0 <= seed <= 2**64 - 1:   # one rule for both backends: numpy takes no negative seed, torch none above 64 bits
        raise EnvError(f"seed must be an integer from 0 to 2**64 - 1, got {seed}")
    registered = spec(env_id)
    if backend not in ("auto", "torch", "gymnasium"):
        raise EnvError(f"backend must be auto, torch or gymnasium, got '{backend}'")
    if backend == "torch" and env_id not in NATIVE_ENVS:
        raise EnvError(f"no native torch version of '{env_id}' (have: {', '.join(NATIVE_ENVS)}); "
                       "use --backend gymnasium")
    if backend != "gymnasium" and env_id in NATIVE_ENVS:
        return NATIVE_ENVS[env_id](num_envs, device=device, seed=seed, max_episode_steps=max_episode_steps)
    # gymnasium's warnings (an out-of-date version, ...) are shown once the env is built: a refusal stays one line
    with warnings.catch_warnings(record=True) as caught:
        try:
            env = GymVectorEnv(env_id, num_envs, device=device, max_episode_steps=max_episode_steps)
        except gym.error.DependencyNotInstalled as e:
            entry_point = str(registered.entry_point)   # e.g. gymnasium.envs.box2d.lunar_lander:LunarLander
            family = entry_point.split(".")[2] if entry_point.startswith("gymnasium.envs.") else ""
            extra = _FAMILY_EXTRAS.get(family, "the package it names")
            raise EnvError(f"'{env_id}' needs an extra that is not installed: pip install \"{extra}\" ({e})") from None
        except ImportError as e:
            if e.name:   # a module that is not installed, e.g. jax for the phys2d/ ids
                package = e.name.split(".")[0]
                how = f'pip install "{_MODULE_EXTRAS[package]}"' if package in _MODULE_EXTRAS else f"pip install {package}"
                raise EnvError(f"'{env_id}' needs the package '{package}', which is not installed: {how}") from None
            # gymnasium's own reason, e.g. Hopper-v3: "the mujoco v2 and v3 based environments have been moved ..."
            newest = gym.envs.registration.find_highest_version(registered.namespace, registered.name)
            hint = ("" if newest is None or newest == registered.version else
                    f"; {gym.envs.registration.get_env_id(registered.namespace, registered.name, newest)} is installed")
            raise EnvError(f"'{env_id}' cannot be built here: {str(e).rstrip('.')}{hint}") from None
        except gym.error.Error as e:
            raise EnvError(f"'{env_id}' cannot be built here: {str(e).rstrip('.')}") from None
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return env


# ------------------------------------------------------------------------------------------------
# The paper's control benchmark (SPPO §5.3): five long-horizon tasks with one 0/1 outcome at the end.
# A task is an ordinary environment behind `OutcomeEnv`, which replaces its reward: the 0/1 outcome
# for the RL stage, the shaped reward for the expert stage (control_tasks.py runs the stages). Where
# the paper leaves a detail open, the choice is written beside the task (tests/test_control_tasks.py).
# A success predicate reads the step on which an episode ends,
#   success(obs [B, obs_dim], reward [B] (the env's own), terminated [B], truncated [B], info) -> bool [B],
# and a shaped reward (the expert stage's) every step, with the observation before it:
#   shaped(prev_obs [B, obs_dim], obs, reward, terminated, truncated, info) -> float [B]
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    name: str
    env_id: str
    horizon: int                     # H: the episode is cut (truncated) after H steps
    episodes: int                    # trajectories per update in the paper
    success: Callable                # the 0/1 outcome, judged on the step the episode ends
    shaped: Callable                 # the dense reward of the expert stage
    expert: dict                     # sppo.py settings of the expert stage
    demos: int                       # SFT: successful expert episodes to clone
    bc_steps: int                    # SFT: gradient steps of behaviour cloning (fewer: a weaker SFT policy)
    goal_position: float | None = None
    controller: Callable | None = None   # a classical controller used as the expert instead of stage 1
    # sppo.py settings of the RL stage (the 0/1 outcome, from the SFT policy), which `sppo.py --task` applies
    # to every flag the user did not type (sppo.task_settings)
    rl: dict = field(default_factory=lambda: dict(RL_STAGE))


# The RL stage's settings, the same for the five tasks and every method (benchmarks/rlvr.py). sppo.py's own
# defaults learn CartPole from scratch; from an SFT start they destroyed the policy (README, "The control
# benchmark"). So: a smaller actor step (3e-3 collapsed SPPO on mountaincar), the raw advantages (a 0/1
# outcome already bounds them; the official code does not standardise either), and the per-step ratio of
# the paper's Eq. 3 (over 1000 steps the sequence ratio's geometric mean hardly leaves [1 - eps, 1 + eps],
# so clipping stops bounding the update).
RL_STAGE = dict(lr=1e-4, norm_adv=False, ratio="token")


class LanderHeuristic:
    """LunarLander's expert: gymnasium's own hand-written landing controller (`heuristic` in
    gymnasium/envs/box2d/lunar_lander.py), applied to each row. Our PPO on the dense reward did not
    land within 1M steps (see README), so this task's expert is classical, not trained."""

    def act(self, obs):   # obs [B, 8] -> actions [B] (long), logp [B] (zeros: the controller is deterministic)
        from types import SimpleNamespace
        from gymnasium.envs.box2d.lunar_lander import heuristic
        stub = SimpleNamespace(unwrapped=SimpleNamespace(continuous=False))   # it only asks this of the env
        actions = torch.tensor([heuristic(stub, row) for row in obs.cpu().numpy()], device=obs.device)
        return actions, torch.zeros(len(obs), device=obs.device)


def _cartpole_success(obs, reward, term, trunc, info):
    # balanced for all H steps (a fall terminates the episode: a failure) AND the pole within 0.5 deg
    return trunc & ~term & (obs[:, 2].abs() <= math.radians(0.5))


def _cartpole_shaped(prev, obs, reward, term, trunc, info):
    # gymnasium's +1 per step alive, scaled down the further the pole leans (1 upright, 0 at 12 deg)
    return reward * (1 - obs[:, 2].abs() / math.radians(12))


def _mountaincar_success(obs, reward, term, trunc, info):
    return term   # the env terminates exactly when the car reaches the flag (moved to x >= 0.45 below)


def _mountaincar_energy(obs):
    # mechanical energy per unit mass: 0.5 v^2 + the potential of MountainCar's gravity term 0.0025 cos(3x)
    return 0.5 * obs[:, 1] ** 2 + 0.0025 / 3 * torch.sin(3 * obs[:, 0])


def _mountaincar_shaped(prev, obs, reward, term, trunc, info):
    # gymnasium's -1 per step, +100 at the flag, and a bonus for every gain of energy (the paper's
    # "velocity bonus", written as a potential difference: it telescopes over an episode to at most
    # ~100, so swinging forever without reaching the flag never pays more than reaching it)
    return reward + 6e4 * (_mountaincar_energy(obs) - _mountaincar_energy(prev)) + 100 * term.float()


def _pendulum_success(obs, reward, term, trunc, info):
    return obs[:, 0] > 0.8   # cos(theta) > 0.8: within about 37 degrees of upright at the end


def _pendulum_shaped(prev, obs, reward, term, trunc, info):
    # gymnasium's cost (angle, speed, torque) plus an upright bonus, so that staying up pays off
    return reward + 2.0 * (obs[:, 0] > 0.8).float()


def _lander_success(obs, reward, term, trunc, info):
    # both legs on the ground within the pad (|x| < 0.4) -- and not a crash. A crash also ends the
    # episode, often with the legs down; gymnasium marks it with a -100 reward on that step, a landing
    # that comes to rest with +100 (the step's shaping terms are far smaller than 100).
    landed = (obs[:, 6] > 0.5) & (obs[:, 7] > 0.5) & (obs[:, 0].abs() < 0.4)
    return landed & ~(term & (reward < 0))


def _env_reward(prev, obs, reward, term, trunc, info):
    # LunarLander's and Hopper's own dense rewards are already shaped (lander: distance, speed, legs,
    # fuel; hopper: forward velocity + healthy bonus - control cost)
    return reward


def _hopper_x(info, like):
    # gymnasium keeps the torso's x out of Hopper's observation; its info has it, measured from the
    # world origin, where every episode starts (reset noise 0.005)
    return torch.as_tensor(info["x_position"], dtype=torch.float32, device=like.device)


def _hopper_success(obs, reward, term, trunc, info):
    # survived all H steps (a fall terminates the episode: a failure) with the torso past x = 1 m
    return trunc & ~term & (_hopper_x(info, obs) > 1.0)


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("precision-cartpole", "CartPole-v1", 200, 64, _cartpole_success, _cartpole_shaped,
         expert=dict(algo="ppo", total_steps=300_000, num_episodes=32), demos=16, bc_steps=360),
    Task("mountaincar", "MountainCar-v0", 1000, 8, _mountaincar_success, _mountaincar_shaped,
         expert=dict(algo="ppo", total_steps=300_000, num_episodes=16), demos=8, bc_steps=375,
         goal_position=0.45),
    Task("pendulum", "Pendulum-v1", 1000, 16, _pendulum_success, _pendulum_shaped,
         expert=dict(algo="ppo", total_steps=500_000, num_episodes=16, gamma=0.99), demos=8, bc_steps=650),
    Task("lunarlander", "LunarLander-v3", 1000, 16, _lander_success, _env_reward,
         expert={}, demos=16, bc_steps=500, controller=LanderHeuristic),
    Task("hopper", "Hopper-v5", 1000, 8, _hopper_success, _env_reward,
         expert=dict(algo="ppo", ratio="token", total_steps=1_000_000, num_episodes=8, gamma=0.99, lr=3e-4,
                     critic_lr=1e-3, epochs=10, minibatches=8), demos=16, bc_steps=3000),
)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise EnvError(f"unknown --task '{name}'; the tasks are: {', '.join(TASKS)}")
    return TASKS[name]


class OutcomeEnv:
    """A batched env whose reward is the task's: `outcome` gives 1.0 on the step an episode ends if the
    task's predicate holds, 0.0 on every other step; `shaped` gives the expert's dense reward. Either
    way info["success"] [B] (bool) holds the predicate on the steps where an episode ends (False
    elsewhere), and envs.rollout reads the episode's success from it."""

    def __init__(self, task: Task, env, reward: str):
        self.task, self.env, self.reward = task, env, reward
        self.env_id, self.num_envs, self.device = task.env_id, env.num_envs, env.device
        self.single_observation_space, self.single_action_space = env.single_observation_space, env.single_action_space
        self.max_episode_steps = env.max_episode_steps
        if hasattr(env, "autoreset_states"):   # a native env: envs.rollout draws its autoreset states
            self.autoreset_states = env.autoreset_states

    def reset(self, seed=None, group_size=1):
        self.obs = self.env.reset(seed=seed, group_size=group_size)
        return self.obs

    def step(self, actions, **kwargs):
        obs, reward, term, trunc, info = self.env.step(actions, **kwargs)
        ended = term | trunc
        success = self.task.success(obs, reward, term, trunc, info) & ended
        if self.reward == "outcome":
            reward = success.float()
        else:
            reward = self.task.shaped(self.obs, obs, reward, term, trunc, info).float()
        self.obs = obs
        return obs, reward, term, trunc, {**info, "success": success}

    def close(self):
        self.env.close()


def make_task(name: str, num_envs: int, device: str = "cpu", seed: int = 0, reward: str = "outcome",
         backend: str = "auto", horizon: int = 0) -> OutcomeEnv:
    """B copies of a task, cut at its horizon H (or `horizon`, for tiny tests), with the outcome (or
    shaped) reward."""
    task = get_task(name)
    env = make_env(task.env_id, num_envs, device=device, seed=seed, backend=backend,
                        max_episode_steps=horizon or task.horizon)
    if task.goal_position is not None:   # the paper's MountainCar flag is at x >= 0.45 (gymnasium's: 0.5)
        for copy in (env.env.envs if isinstance(env, GymVectorEnv) else [env]):
            getattr(copy, "unwrapped", copy).goal_position = task.goal_position
    return OutcomeEnv(task, env, reward)


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
    A non-finite action or log-prob raises FloatingPointError: on a gymnasium env before env.step
    takes it, on a native one at the end of its chunk.
    """
    horizon = horizon or env.max_episode_steps
    s0 = obs = env.reset(seed=seed, group_size=group_size)
    # a native env's autoreset states are drawn here, a chunk at a time: torch.compile cannot trace
    # the env's torch.Generator, and drawing k rows at once gives the numbers k single draws would
    draw = getattr(env, "autoreset_states", None)
    if compile and draw is None:
        raise ValueError(f"compile=True needs a native torch env; {getattr(env, 'env_id', env)} is not one")

    def check_finite(actions: torch.Tensor, logp: torch.Tensor) -> None:
        """A diverged policy samples NaN: stop with FloatingPointError (the trainers' non-finite stop)."""
        for what, x in (("an action of the policy", actions), ("the log-prob of a sampled action", logp)):
            if not bool(torch.isfinite(x).all()):
                raise FloatingPointError(f"{what} is {'NaN' if bool(torch.isnan(x).any()) else 'infinite'}")

    if draw is None:   # a gymnasium env: its simulator must never see a NaN action (Box2D ends in an assertion);
        policy = act   # each action goes to the host anyway, so checking it before env.step costs nothing more

        def act(obs):
            action, logp = policy(obs)
            check_finite(action, logp)
            return action, logp
    ever_ended = torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)
    chunks = []
    for start in range(0, horizon, check_every):
        k = min(check_every, horizon - start)
        # a shorter last chunk runs eagerly rather than compiling a second program for it
        steps = compiled_steps() if compile and k == check_every else _steps
        chunk = steps(env, act, obs, k, None if draw is None else draw(k))
        check_finite(chunk["actions"], chunk["logp"])   # native envs step on NaN without complaint: check each chunk
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
    if run["success"] is not None:   # a task env (make_task) judges success on the step an episode ends;
        success = run["success"].gather(0, last)[0] & ~cut   # one still running at the horizon has not succeeded
    else:
        success = None if success_fn is None else success_fn(final_obs, terminated, truncated | cut)
    # obs[t] is the observation the action of step t was chosen from: s0, then those after each step
    return Episodes(obs=torch.cat([s0[None], run["obs"][:-1]]), actions=run["actions"], logp=run["logp"],
                    rewards=run["rewards"], step_mask=step_mask, s0=s0, final_obs=final_obs,
                    terminated=terminated, truncated=truncated, success=success)
