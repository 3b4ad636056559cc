"""Exercise 4 of notebooks/04_probes_and_exercises.ipynb, solved: the suspect update with its one wrong line fixed."""
import torch

import envs
import objective

BUG = ("The critic reads batch.final_obs, the observation after the episode, which shows the action taken "
       "(in an LLM: a critic that reads the response). It learns Q(s0, a) instead of V(s0), so R - V no longer "
       "says whether the action was better than usual: its mean is 0 for either action and the policy gets no "
       "signal, while the value loss and the explained variance look better than a correct critic's. "
       "Fix: the critic reads the context only, batch.s0.")


def fixed_update(args, env, actor, critic, optimizer, seed: int, train_actor: bool = True):
    batch = envs.rollout(env, actor.act, seed=seed)
    outcome = batch.success.float()                                       # R [B], 0 or 1
    context = batch.s0                                                    # [B, obs_dim]: before any action -- the fix
    with torch.no_grad():
        value = critic(context)                                           # V(s0) [B]
        advantage = objective.sppo_advantage(outcome, value)              # A = R - V(s0), shared by every step
    for _ in range(args.epochs):
        for idx in torch.randperm(len(outcome)).tensor_split(args.minibatches):
            mask = batch.step_mask[:, idx]
            logp, _ = actor.logp_entropy(batch.obs[:, idx], batch.actions[:, idx])
            policy_loss, _ = objective.policy_loss(logp, batch.logp[:, idx], advantage[idx], mask, args.ratio, args.clip_eps)
            value_loss = critic.loss(context[idx], outcome[idx]).mean()
            optimizer.zero_grad()
            ((policy_loss if train_actor else 0) + value_loss).backward()
            optimizer.step()
    return batch, {"value_loss": float(value_loss.detach()), "explained_var": objective.explained_variance(value, outcome),
                   "adv_std": float(advantage.std())}
