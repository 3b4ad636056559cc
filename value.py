"""The critics: a scalar prompt value V(s0) for Sequence-Level PPO, a per-step value V(s_t) for PPO.

The whole difference in *what the critic is asked* is the lesson of this file:

* Sequence-Level PPO (and the paper's LLM runs) needs ONE number per episode: how good is this
  context, before any action is taken? V(s0) ~ E[R | s0]. For an LLM, s0 is the prompt and V(prompt)
  is the model's estimate that it will answer correctly. The advantage R - V(s0) is then shared by
  every step (token) of the episode.
* Token-level PPO needs a value for EVERY prefix s_t, and GAE chains them together. With a sparse
  end-of-episode reward the critic must learn, from the same data, a value for thousands of states
  that mostly differ from each other only by which step we are at -- the "tail effect" of the paper.

Two target types:
* binary outcome R in {0, 1} ("success"): the critic outputs a logit, V = sigmoid(logit) is the
  estimated probability of success, trained with binary cross-entropy. This is the paper's choice.
* returns ("return"): regression (MSE). Returns can be large (CartPole: up to 500) and change scale
  during training, so targets are standardised with running statistics (`ReturnScaler`) and the
  network predicts the standardised value; `forward` converts back to return units.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(in_dim: int, out_dim: int, hidden: int = 64, out_gain: float = 1.0) -> nn.Sequential:
    """Two tanh hidden layers with orthogonal init (the PPO implementation detail that CleanRL keeps:
    it makes the initial policy close to uniform and the initial value close to zero)."""
    layers = [nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, out_dim)]
    for layer, gain in zip(layers[::2], (2 ** 0.5, 2 ** 0.5, out_gain)):
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class ReturnScaler(nn.Module):
    """Running mean and variance of the regression targets (Chan et al.'s parallel update).
    Buffers, so they are saved in the checkpoint with the critic."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.ones(()))
        self.register_buffer("count", torch.zeros(()))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        n, mean, var = x.numel(), x.mean(), x.var(unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        self.var.copy_((self.var * self.count + var * n + delta ** 2 * self.count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        return self.var.clamp(min=1e-8).sqrt()


class PromptValue(nn.Module):
    """V(s0): one scalar per episode from the context only (LLM: V(prompt)).

    forward(s0 [B, obs_dim]) -> value [B] in outcome units (probability for "success", return for "return")
    loss(s0 [B, obs_dim], outcome [B]) -> per-episode loss [B] (the caller averages)
    """

    def __init__(self, obs_dim: int, hidden: int = 64, target: str = "return"):
        super().__init__()
        self.net, self.target = mlp(obs_dim, 1, hidden), target
        self.scaler = ReturnScaler()

    def forward(self, s0: torch.Tensor) -> torch.Tensor:
        out = self.net(s0).squeeze(-1)
        if self.target == "success":
            return torch.sigmoid(out)                           # estimated probability of success
        return out * self.scaler.std + self.scaler.mean         # back to return units

    def loss(self, s0: torch.Tensor, outcome: torch.Tensor) -> torch.Tensor:
        out = self.net(s0).squeeze(-1)
        if self.target == "success":
            return F.binary_cross_entropy_with_logits(out, outcome, reduction="none")
        return (out - (outcome - self.scaler.mean) / self.scaler.std) ** 2


class StepValue(nn.Module):
    """V(s_t): one scalar per step (LLM: a value head on every token), for token-level PPO + GAE.

    forward(obs [..., obs_dim]) -> value [...] in return units
    loss(obs [T, B, obs_dim], returns [T, B]) -> per-step loss [T, B] (the caller averages over real steps)
    """

    def __init__(self, obs_dim: int, hidden: int = 64):
        super().__init__()
        self.net, self.scaler = mlp(obs_dim, 1, hidden), ReturnScaler()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1) * self.scaler.std + self.scaler.mean

    def loss(self, obs: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        return (self.net(obs).squeeze(-1) - (returns - self.scaler.mean) / self.scaler.std) ** 2


# ================================================================================================
# The same two critics for a language model: a scalar head on a transformer's hidden states.
# ================================================================================================
class LMValue(nn.Module):
    """V from a transformer body (a causal LM without its LM head) and a scalar head.

    The head reads the hidden state at a position, i.e. everything up to and including that token, and
    outputs a logit: V = sigmoid(logit) = the estimated probability that the answer will be correct.
    * Sequence-Level PPO: V(prompt) = the head on the LAST prompt token -- the critic never sees the
      response, so the baseline depends on the context alone (as V(s0) in control).
    * token-level PPO: V(s_t) for response token t = the head on the position just before it (the prefix
      prompt + response[:t]) -- one value per token, the LLM's StepValue.
    The body is a copy of the policy's (`--critic same`) or its first few layers (`--critic small`).

    logits(ids [B, L], attention_mask [B, L], position_ids [B, L]) -> value logits [B, L]
    """

    def __init__(self, body: nn.Module, hidden_size: int):
        super().__init__()
        self.body, self.head = body, nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)   # start at V = 0.5 everywhere: no prompt preferred before data
        nn.init.zeros_(self.head.bias)

    def logits(self, ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        return self.head(hidden).squeeze(-1)

    def prompt_logit(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """prompt_ids, prompt_mask [B, P], LEFT-padded so the last prompt token sits at P-1 in every row
        -> logit of V(prompt) [B]."""
        position_ids = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        return self.logits(prompt_ids, prompt_mask, position_ids)[:, -1]

    def loss(self, logit: torch.Tensor, outcome: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of V = sigmoid(logit) against R in {0, 1}, elementwise (the caller averages)."""
        return F.binary_cross_entropy_with_logits(logit, outcome, reduction="none")
