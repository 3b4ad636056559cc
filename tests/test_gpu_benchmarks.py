"""The GPU benchmarks' own arithmetic and bookkeeping, checked on the CPU (CI has no GPU): the LLM speeds
read from progress.csv, and results/gpu.md merged from the files of separate sittings and devices."""
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import gpu  # noqa: E402
import llm_gpu  # noqa: E402


def test_llm_speeds_from_progress_rows_skip_the_warm_up_step():
    rows = [  # step 1 is the warm-up; steps 2 and 3 each generate 384 tokens
        {"gen_tokens": 384, "gen_tokens_per_s": 10.0, "wall_time": 5.0, "response_len": 24, "peak_mem_gb": 9.0},
        {"gen_tokens": 768, "gen_tokens_per_s": 480.0, "wall_time": 6.5, "response_len": 24, "peak_mem_gb": 9.5},
        {"gen_tokens": 1152, "gen_tokens_per_s": 384.0, "wall_time": 8.5, "response_len": 20, "peak_mem_gb": 9.7},
    ]
    s = llm_gpu.speeds([{k: str(v) for k, v in r.items()} for r in rows])
    # sampling 0.8 s then 1.0 s; steps 1.5 s and 2.0 s, so training 0.7 s and 1.0 s
    assert s["sample_tok_s"] == pytest.approx((480 + 384) / 2)
    assert s["train_tok_s"] == pytest.approx((384 / 0.7 + 384 / 1.0) / 2)
    assert s["step_s"] == pytest.approx(1.75) and s["response_len"] == 22 and s["peak_gb"] == 9.7


def test_gpu_md_merges_the_files_of_each_device(tmp_path, monkeypatch):
    parts = tmp_path / "gpu"
    parts.mkdir()
    prov = {"machine": "m", "python": "3", "torch": "t", "commit": "abc", "note": ""}
    for device, rate in (("cuda", 2e6), ("cpu", 3e5)):
        data = {"rows": [{"env": "CartPole-v1", "device": device, "num_envs": 64, "steps": 10, "env_steps_per_s": rate}],
                "provenance": {**prov, "gpu": "G", "command": f"python benchmarks/gpu.py --devices {device}"}}
        (parts / f"envs-{device}.json").write_text(json.dumps(data))
    monkeypatch.setattr(gpu, "PARTS", str(parts))
    monkeypatch.setattr(gpu, "RESULTS", str(tmp_path))
    gpu.render()
    md = (tmp_path / "gpu.md").read_text()
    assert "| CartPole-v1 | cuda | 2.00M |" in md and "| CartPole-v1 | cpu | 300.0k |" in md
    assert "--devices cuda" in md and "--devices cpu" in md
