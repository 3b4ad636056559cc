"""Shared pytest set-up: make the repository root importable (sppo.py, value.py, envs.py live there),
so the tests run the same under `pytest` and `python -m pytest`, from any directory."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
