"""llm_models.py and the update's use of it: the update trains on what the sampler sampled.

On tiny random models built from configs (tests/tiny_lm.py): a Llama, and a GPT-2 with dropout 0.1 --
another layout of the blocks (`.h`) and the dropout the Llama lacks."""
import copy
import csv
import math

import pytest
import torch

import llm_demo
import llm_models
from tiny_lm import make_tiny_gpt2, make_tiny_lm

CPU = torch.device("cpu")
FLAGS = ["--n-train", 40, "--n-eval", 4, "--eval-k", 2, "--max-new-tokens", 6, "--log-every", 0, "--device", "cpu"]
# one step at a learning rate that moves no weight (1e-12 is far below float32's resolution of a weight)
STANDING_STILL = ["--algo", "grpo", "--group-size", 2, "--batch-size", 4, "--steps", 1, "--epochs", 2,
                  "--kl-coef", 0.1, "--lr", 1e-12]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {"llama": make_tiny_lm(str(root / "llama"), layers=3), "gpt2": make_tiny_gpt2(str(root / "gpt2"), layers=3)}


def one_run(tmp_path, monkeypatch, model, *args):
    monkeypatch.chdir(tmp_path)
    assert llm_demo.main([str(a) for a in ["--model", model, *FLAGS, *args, "--run-name", "r"]]) == 0
    with open(tmp_path / "runs" / "r" / "progress.csv") as f:
        return list(csv.DictReader(f))


def logits_twice(net, policy, train=True):
    ids, mask = policy.left_pad(policy.encode(["What is 12 plus 30?", "hi"]))
    net.train(train)
    out = [net(input_ids=ids, attention_mask=mask) for _ in range(2)]
    key = "logits" if "logits" in out[0] else "last_hidden_state"
    return out[0][key], out[1][key]


# ------------------------------------------------------------------------------------------------
# Dropout: off everywhere, so the update scores the tokens with the network that sampled them
# ------------------------------------------------------------------------------------------------
def test_dropout_is_off_in_the_policy_its_reference_and_critics(models):
    """The GPT-2 was saved with dropout 0.1 (residual, embedding, attention). Loaded for RL, every rate is
    0 -- modules and config -- and two forwards in training mode (the update's) give the same numbers."""
    policy = llm_models.load(models["gpt2"], CPU, torch.float32)
    model = policy.model
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.0] * (1 + 3 * 3)   # embd, 3 per block
    assert (model.config.resid_pdrop, model.config.embd_pdrop, model.config.attn_pdrop) == (0.0, 0.0, 0.0)
    a, b = logits_twice(model, policy)
    assert torch.equal(a, b)
    reference = copy.deepcopy(model)   # as llm_demo.setup makes it
    assert torch.equal(logits_twice(reference, policy)[0], a)
    for kind in ("small", "same"):
        a, b = logits_twice(llm_models.critic_body(model, kind, 1), policy)
        assert torch.equal(a, b), kind


def test_a_float_dropout_rate_a_module_keeps_is_zeroed_too():
    """Llama-style attention reads a float `attention_dropout` off the module at forward time; OPT-style
    `layerdrop` skips whole layers with that probability: both are dropout without an nn.Dropout."""
    net = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(2, 2))
    net[1].attention_dropout, net[1].layerdrop, net[1].hidden_size = 0.1, 0.2, 2.0
    net.config = type("Config", (), {})()
    net.config.attention_dropout, net.config.rope_theta = 0.1, 10000.0
    llm_models.without_dropout(net)
    assert (net[0].p, net[1].attention_dropout, net[1].layerdrop, net.config.attention_dropout) == (0.0, 0.0, 0.0, 0.0)
    assert (net[1].hidden_size, net.config.rope_theta) == (2.0, 10000.0)   # rates only


def test_a_step_that_moves_no_weight_shows_no_kl_on_a_dropout_model(tmp_path, monkeypatch, models):
    """The issue's command on a GPT-2 with dropout 0.1: before the fix approx_kl 0.004 and kl_ref 0.002
    (dropout drew another network in each forward); with the weights standing still both are 0."""
    row = one_run(tmp_path, monkeypatch, models["gpt2"], *STANDING_STILL)[0]
    assert float(row["approx_kl"]) < 1e-7 and float(row["kl_ref"]) < 1e-7
    assert float(row["policy_loss"]) == 0.0 or abs(float(row["policy_loss"])) < 1e-7


# ------------------------------------------------------------------------------------------------
# The small critic: the policy's first layers, for any architecture
# ------------------------------------------------------------------------------------------------
def blocks_of(decoder):
    return decoder.h if hasattr(decoder, "h") else decoder.layers   # GPT-2 | Llama (the test knows both)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_small_critic_is_the_policys_first_layers_as_its_own_copy(models, arch):
    """A GPT-2 keeps its blocks at `.h`, not `.layers` (before: AttributeError). The small body equals the
    policy's decoder cut after 1 of its 3 blocks (final norm kept) -- for the Llama bit for bit what the
    old `.layers[:k]` copy computed -- and owns its weights; building it draws no random number."""
    policy = llm_models.load(models[arch], CPU, torch.float32)
    decoder = policy.model.base_model
    rng = torch.get_rng_state()
    small = llm_models.critic_body(policy.model, "small", 1)
    assert torch.equal(torch.get_rng_state(), rng)        # the run samples the same responses as before
    old = copy.deepcopy(decoder)                          # the old construction: a copy, its blocks cut
    blocks = blocks_of(old)
    del blocks[1:]
    old.config = copy.deepcopy(old.config)
    old.config.num_hidden_layers = 1
    old.get_input_embeddings().requires_grad_(False)
    assert len(blocks_of(small)) == small.config.num_hidden_layers == 1 and decoder.config.num_hidden_layers == 3
    assert [n for n, _ in small.named_parameters()] == [n for n, _ in old.named_parameters()]
    for (name, p), q in zip(small.named_parameters(), old.parameters()):
        assert torch.equal(p, q) and p.requires_grad == q.requires_grad == ("wte" not in name and "embed" not in name)
    a, _ = logits_twice(small, policy, train=decoder.training)
    b, _ = logits_twice(old, policy, train=decoder.training)
    assert torch.equal(a, b)
    own = {p.data_ptr() for p in small.parameters()}
    assert not own & {p.data_ptr() for p in policy.model.parameters()}
    with torch.no_grad():
        next(small.parameters()).add_(1.0)                # training the critic leaves the policy alone
    assert torch.equal(next(decoder.parameters()), next(old.parameters()))


def test_a_small_critic_as_deep_as_the_policy_is_a_whole_copy(models):
    policy = llm_models.load(models["gpt2"], CPU, torch.float32)
    body = llm_models.critic_body(policy.model, "small", 5)
    assert len(body.h) == 3 and body.config.num_hidden_layers == 3


def test_a_config_without_a_layer_count_is_one_clear_error():
    class Base(torch.nn.Module):
        config = type("Config", (), {})()
    with pytest.raises(llm_models.ConfigError, match="use --critic same"):
        llm_models.small_body(Base(), 1)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_run_with_a_small_critic_trains_on_either_architecture(tmp_path, monkeypatch, models, arch):
    rows = one_run(tmp_path, monkeypatch, models[arch], "--algo", "ppo", "--critic", "small", "--critic-layers", 1,
                   "--batch-size", 4, "--steps", 1)
    assert float(rows[0]["value_loss"]) > 0


# ------------------------------------------------------------------------------------------------
# The sampler's log-probs: measured against the trainer's, and the gap corrected under bf16
# ------------------------------------------------------------------------------------------------
def test_the_sampler_keeps_the_log_prob_of_each_token_it_drew(models):
    """Applying T in its own logits processor changes no draw (the same tokens as transformers' own
    temperature warper, seed for seed), and the log-probs it keeps are the trainer's to float32 rounding."""
    policy = llm_models.load(models["llama"], CPU, torch.float32)
    ids, mask = policy.left_pad(policy.encode(["What is 2+2?", "hi", "Ann has 3 cats."]))
    torch.manual_seed(0)
    response, sampler_logp = policy.generate(ids, mask, 0.7, 10, with_logp=True)
    torch.manual_seed(0)
    own = policy.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=True,
                                temperature=0.7, top_k=0)[:, ids.shape[1]:]
    assert torch.equal(response, own) and sampler_logp.shape == response.shape
    real = policy.response_mask(response)
    with torch.no_grad():
        trainer_logp = policy.response_logp(ids, mask, response, real, 0.7)[0]
    assert ((sampler_logp - trainer_logp).abs() * real).max() < 1e-5
    assert policy.generate(ids, mask, 0.7, 10, greedy=True, with_logp=True)[1] is None


def planted_batch(policy, gaps):
    """Two responses with every reward 1 (reinforce: A = 1) whose sampler log-probs sit `gaps` below the
    trainer's (one gap per response); the trainer's computed under bf16 autocast, as the update will."""
    eos = policy.eos_ids[0]
    pids, pmask = policy.left_pad(policy.encode(["What is 7 - 4?", "Ann has 3 cats. She gets 2 more."]))
    rids = torch.tensor([[30, 31, 32, eos], [33, eos, 0, 0]])
    rmask = policy.response_mask(rids)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        trainer = policy.response_logp(pids, pmask, rids, rmask, 0.7)[0]
    sampler = trainer - torch.tensor(gaps)[:, None]
    return llm_demo.Rollout(pids, pmask, rids, rmask, ["", ""], torch.tensor([1.0, 1.0]), sampler)


@pytest.mark.parametrize("ratio", ["token", "seq"])
def test_the_gap_is_logged_and_under_bf16_weighted_out(models, ratio):
    """Gaps log 1.5 and log 3 (4 and 2 real tokens, EOS included): logp_mismatch = their token-mean, the max
    the larger. Under autocast each token's advantage is weighted by min(pi_trainer / pi_sampler, 2) = 1.5
    and 2 (the cap), so at rho = 1 the loss is -(4 * 1.5 + 2 * 2) / 6; in float32 no weight: -1."""
    policy = llm_models.load(models["llama"], CPU, torch.float32)
    batch = planted_batch(policy, [math.log(1.5), math.log(3.0)])
    args = llm_demo.LLMArgs(algo="reinforce", ratio=ratio, micro_batch=1, max_grad_norm=0.0, temperature=0.7,
                            norm_adv=False)   # the planted advantages as they are
    rows = {}
    for dtype in (torch.bfloat16, torch.float32):
        net = llm_models.Policy(copy.deepcopy(policy.model), policy.tok, CPU)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            rows[dtype] = llm_demo.update(args, net, None, None, torch.optim.SGD(net.model.parameters(), lr=0.0),
                                          batch, batch.rewards)
    bf16 = rows[torch.bfloat16]
    assert bf16["logp_mismatch"] == pytest.approx((4 * math.log(1.5) + 2 * math.log(3.0)) / 6, abs=1e-6)
    assert bf16["logp_mismatch_max"] == pytest.approx(math.log(3.0), abs=1e-6)
    assert bf16["policy_loss"] == pytest.approx(-(4 * 1.5 + 2 * 2.0) / 6, abs=1e-5)
    assert rows[torch.float32]["policy_loss"] == pytest.approx(-1.0, abs=1e-6)


def test_a_bf16_run_logs_the_gap_and_standing_still_shows_no_kl(tmp_path, monkeypatch, models):
    """--dtype bfloat16 on CPU (autocast): the gap is a finite column of every row; pi_old is the trainer's
    own forward, so a step that moves no weight still shows approx_kl = kl_ref = 0."""
    rows = one_run(tmp_path, monkeypatch, models["llama"], *STANDING_STILL, "--dtype", "bfloat16")
    for row in rows:
        mean, worst = float(row["logp_mismatch"]), float(row["logp_mismatch_max"])
        assert math.isfinite(mean) and math.isfinite(worst) and 0 <= mean <= worst
        assert float(row["approx_kl"]) < 1e-7 and float(row["kl_ref"]) < 1e-7


@pytest.mark.parametrize("flat_batches, rewards, moves", [
    ("standardize", [0.0, 0.0], True),    # two failures 0.01 apart in V: standardised to +-1
    ("skip", [0.0, 0.0], False),          # no reward spread: no gradient at all, and zero_adv_frac says so
    ("skip", [1.0, 0.0], True),           # a right and a wrong answer: standardised, as always
])
def test_flat_batches_decides_what_a_batch_without_reward_spread_does(models, flat_batches, rewards, moves):
    """--norm-adv on A = R - V(prompt) with V = 0.30 and 0.31."""
    policy = llm_models.load(models["llama"], CPU, torch.float32)
    batch = planted_batch(policy, [0.0, 0.0])
    batch.rewards, batch.sampler_logp = torch.tensor(rewards), None
    args = llm_demo.LLMArgs(algo="sppo", micro_batch=1, max_grad_norm=0.0, norm_adv=True, flat_batches=flat_batches)
    row = llm_demo.update(args, policy, None, None, torch.optim.SGD(policy.model.parameters(), lr=0.0),
                          batch, batch.rewards - torch.tensor([0.30, 0.31]))
    grad = torch.nn.utils.get_total_norm([p.grad for p in policy.model.parameters() if p.grad is not None])
    assert row["zero_adv_frac"] == (0.0 if moves else 1.0)
    assert (float(grad) > 0.0) == moves and float(grad) < 1e3
