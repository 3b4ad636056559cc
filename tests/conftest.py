"""Shared pytest set-up: make the repository root importable (sppo.py, value.py, envs.py live there),
so the tests run the same under `pytest` and `python -m pytest`, from any directory."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread_per_llm_run(monkeypatch):
    """llm_demo.py's default --threads 0 takes the cores idle at the start (runlog.idle_cores), which
    depends on what else the machine runs: in-process runs of the tests take one thread instead, so that
    two runs compared bit for bit use the same count (and pytest's workers do not fight for cores)."""
    llm_demo = sys.modules.get("llm_demo")
    if llm_demo is not None:
        monkeypatch.setattr(llm_demo, "idle_cores", lambda n_proc=1: 1)
