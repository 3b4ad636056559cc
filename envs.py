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
        # Copies i and j share an initial state iff they are seeded alike: group g gets seed + g.
        seeds = None if seed is None else [seed + i // group_size for i in range(self.num_envs)]
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
# Native torch environments (filled in by the native-env section below)
# ------------------------------------------------------------------------------------------------
NATIVE_ENVS: dict[str, type] = {}


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
        family = str(gym.spec(env_id).entry_point).split(".")[2] if "envs." in str(gym.spec(env_id).entry_point) else ""
        extra = _EXTRAS.get(family, "the package it names")
        raise EnvError(f"'{env_id}' needs an extra that is not installed: pip install \"{extra}\" ({e})") from None


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


@torch.no_grad()
def rollout(env, act, horizon: int | None = None, group_size: int = 1, seed: int | None = None,
            check_every: int = 16) -> Episodes:
    """Run one episode in each of the env's B copies, to its end or to `horizon` steps.

    act(obs [B, obs_dim]) -> (action [B] or [B, act_dim], logp [B]) samples from the current policy.
    group_size G > 1 starts each consecutive group of G copies from one shared initial state (for
    GRPO/RLOO: G "responses" to the same "prompt").

    Everything stays on env.device; the only host synchronisation is an `any episode still running?`
    test every `check_every` steps, so that a batch of short episodes does not pay for the horizon.
    """
    horizon = horizon or env.max_episode_steps
    obs = env.reset(seed=seed, group_size=group_size)
    s0, final_obs = obs.clone(), obs.clone()
    B, dev = obs.shape[0], obs.device
    running = torch.ones(B, dtype=torch.bool, device=dev)   # episode not over yet
    terminated = torch.zeros(B, dtype=torch.bool, device=dev)
    truncated = torch.zeros(B, dtype=torch.bool, device=dev)
    obs_buf, act_buf, logp_buf, rew_buf, mask_buf = [], [], [], [], []
    for t in range(horizon):
        action, logp = act(obs)
        next_obs, reward, term, trunc, _ = env.step(action)
        obs_buf.append(obs); act_buf.append(action); logp_buf.append(logp)
        rew_buf.append(reward); mask_buf.append(running.float())
        ended = running & (term | trunc)
        # keep the true last observation of each episode (the env resets that copy on the next step)
        final_obs = torch.where(running.unsqueeze(1), next_obs, final_obs)
        terminated |= ended & term
        truncated |= ended & trunc & ~term
        running = running & ~ended
        obs = next_obs
        if (t + 1) % check_every == 0 and not bool(running.any()):
            break
    # an episode still running at the horizon ends "cut" (neither flag); the caller bootstraps it
    success_fn = SUCCESS.get(getattr(env, "env_id", ""))
    success = None if success_fn is None else success_fn(final_obs, terminated, truncated | running)
    return Episodes(obs=torch.stack(obs_buf), actions=torch.stack(act_buf), logp=torch.stack(logp_buf),
                    rewards=torch.stack(rew_buf), step_mask=torch.stack(mask_buf), s0=s0, final_obs=final_obs,
                    terminated=terminated, truncated=truncated, success=success)
