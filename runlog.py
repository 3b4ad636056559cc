"""Run folders: checkpoints, progress.csv, the learning curve, Ctrl-C, devices. Pure plumbing, shared by
the trainers, so that sppo.py can tell the algorithm's story without it.

Promises kept here (and tested through sppo.py):
  * a checkpoint is written to a temporary file and renamed, so it is never half-written;
  * the first Ctrl-C finishes the current update, then the trainer saves; a second one stops at once;
  * --resume drops progress.csv rows newer than the checkpoint, so replayed updates are not listed twice;
  * every user-fixable problem is a ConfigError: one line, exit code 2, no traceback.
"""
from __future__ import annotations

import csv
import os
import signal
import sys

import torch


class ConfigError(ValueError):
    """Impossible settings or unusable files: reported as one line, exit code 2."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} but no CUDA device is available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown --device '{name}'; use cpu, cuda or auto") from None


def check_settings(args, choices: dict, positive_ints=(), positive_floats=()) -> None:
    """The checks every trainer's settings share: a value among its choices, sizes >= 1, rates > 0.
    Each failure is one ConfigError naming the flag as the user typed it."""
    flag = lambda name: "--" + name.replace("_", "-")
    for name, allowed in choices.items():
        if getattr(args, name) not in allowed:
            raise ConfigError(f"{flag(name)} must be one of {', '.join(map(str, allowed))}, got '{getattr(args, name)}'")
    for name in positive_ints:
        if getattr(args, name) < 1:
            raise ConfigError(f"{flag(name)} must be a positive integer, got {getattr(args, name)}")
    for name in positive_floats:
        if not getattr(args, name) > 0:
            raise ConfigError(f"{flag(name)} must be > 0, got {getattr(args, name)}")


def read_checkpoint(path: str, keys: tuple[str, ...]) -> dict:
    """Load a checkpoint written by save_checkpoint, refusing anything that lacks `keys`."""
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint not found: {path}; pass the model.pt of an earlier run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        missing = set(keys) - set(ckpt)
    except Exception as e:  # unpickling errors, a truncated zip, foreign content: not a usable checkpoint
        raise ConfigError(f"cannot read checkpoint {path} (corrupt, or not written by this project: "
                          f"{type(e).__name__}); start a new run or pass another model.pt") from None
    if missing:
        raise ConfigError(f"checkpoint {path} lacks {', '.join(sorted(missing))}; it was not written by this project")
    return ckpt


def save_checkpoint(path: str, **state) -> None:
    """Write to a temporary file, then rename: an interruption never leaves a half-written model.pt."""
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


class StopOnCtrlC:
    """The first Ctrl-C asks the loop to stop after the current update (so the checkpoint it then
    saves is consistent with progress.csv); a second one interrupts at once."""

    def __init__(self):
        self.requested = False

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing this update, then saving (press again to stop at once)", file=sys.stderr)

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


def keep_rows_up_to(csv_path: str, last_update: int, columns: list[str], key: str = "update") -> None:
    """On --resume: drop progress.csv rows newer than the checkpoint (a run killed between checkpoints
    wrote them), so the replayed updates are not listed twice. Rewritten atomically."""
    if not os.path.isfile(csv_path):
        return
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r[key]) <= last_update]
    with open(csv_path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(csv_path + ".tmp", csv_path)


def plot_progress(csv_path: str, png_path: str, title: str) -> None:
    """Mean return (and success rate, where the task has one) against env steps, from progress.csv."""
    # a Figure without pyplot writes the PNG without touching the process's backend (a notebook
    # calling train() keeps drawing inline)
    from matplotlib.figure import Figure
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["env_steps"]) for r in rows]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(steps, [float(r["mean_return"]) for r in rows], marker=".", label="mean return")
    ax.set_xlabel("env steps"), ax.set_ylabel("mean episode return"), ax.set_title(title)
    if rows[0]["success_rate"] != "":
        ax2 = ax.twinx()
        ax2.plot(steps, [float(r["success_rate"]) for r in rows], marker=".", color="tab:orange", label="success rate")
        ax2.set_ylabel("success rate"), ax2.set_ylim(-0.02, 1.02)
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88))
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
