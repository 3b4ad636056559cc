"""One colour per method in every figure: runlog.COLOURS, the rule that finds a figure label's method, and
benchmarks/runner.py's band drawing in it (results/*.png), as the notebooks do."""
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.colors  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks.runner import band  # noqa: E402
from runlog import COLOURS, colour  # noqa: E402


def test_every_method_has_its_own_colour():
    methods = ["sppo", "ppo", "grpo", "rloo", "reinforce", "trl-grpo"]
    assert len({COLOURS[m] for m in methods}) == len(methods)
    assert COLOURS["token"] == COLOURS["sppo"]   # the ratio ablation's token runs are the benchmark's SPPO


def test_a_label_names_its_method_by_prefix():
    assert colour("sppo") == colour("sppo (3 seeds)") == colour("sppo-s2") == colour("SPPO: R - V(s0)") == COLOURS["sppo"]
    assert colour("ppo (mean of 3 seeds)") == COLOURS["ppo"]
    assert colour("trl-grpo (1 seed)") == COLOURS["trl-grpo"] != colour("grpo (G = 8)") == COLOURS["grpo"]
    assert colour("seq (3 seeds)") == COLOURS["seq"]
    for other in ("token-level PPO (GAE)", "ours-defaults", "sb3-zoo", "pposomething"):
        assert colour(other) is None   # matplotlib's own cycle


def test_band_draws_a_method_in_its_colour():
    ax = Figure().subplots()
    band(ax, [0, 1, 2], [[0.1, 0.2, 0.3], [0.3, 0.4, 0.5]], "rloo (2 seeds)")
    band(ax, [0, 1, 2], [[0.1, 0.2, 0.3], [0.3, 0.4, 0.5]], "sppo (2 seeds)")
    want = [matplotlib.colors.to_rgba(COLOURS[m]) for m in ("rloo", "sppo")]
    assert [matplotlib.colors.to_rgba(line.get_color()) for line in ax.lines] == want
    assert [tuple(fill.get_facecolor()[0][:3]) for fill in ax.collections] == [w[:3] for w in want]
