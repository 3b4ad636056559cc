"""The house: the top-level modules form layers with no import cycle, and the math imports alone.

    objective.py  value.py             the math and the critics: torch only
    torch_envs.py < envs.py            environments, the paper's tasks, the episode rollout
    runlog.py                          plumbing shared by the trainers
    llm_tasks.py, llm_models.py        the language model's data and plumbing
    sppo.py, llm_demo.py               the two trainers, on the same objective.py
    control_tasks.py                   the benchmark's stages, above the trainer they run
"""
import ast
import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(f[:-3] for f in os.listdir(REPO) if f.endswith(".py"))


def imports_of(module: str) -> set[str]:
    """Every top-level project module that `module` imports, at the top or inside a function."""
    tree = ast.parse(open(os.path.join(REPO, module + ".py")).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(MODULES) - {module}


def test_the_top_level_modules_import_one_another_without_a_cycle():
    graph = {m: imports_of(m) for m in MODULES}
    assert graph["sppo"] and graph["control_tasks"]   # the walk sees imports at all
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import cycle: " + " -> ".join(path + [m])
        state[m] = "open"
        for n in sorted(graph[m]):
            visit(n, path + [m])
        state[m] = "done"

    for m in MODULES:
        visit(m, [])


# README's files table, top to bottom: each module imports only modules above it
LAYERS = ["objective", "value", "torch_envs", "envs", "runlog", "sppo", "llm_tasks", "llm_models", "llm_demo",
          "control_tasks"]


def test_each_module_imports_only_the_ones_above_it_in_readmes_table():
    assert sorted(LAYERS) == MODULES
    for i, m in enumerate(LAYERS):
        assert imports_of(m) <= set(LAYERS[:i]), (m, imports_of(m) - set(LAYERS[:i]))
    readme = open(os.path.join(REPO, "README.md")).read()
    readme = readme[readme.index("## The files"):readme.index("### Choices worth knowing")]
    rows = [line.split("`")[1][:-3] for line in readme.splitlines() if line.startswith("| `") and line.split("`")[1].endswith(".py")]
    assert rows == LAYERS


def test_the_layers():
    assert imports_of("objective") == set() and imports_of("value") == set()
    assert "control_tasks" not in imports_of("sppo") and "sppo" in imports_of("control_tasks")
    assert "sppo" not in imports_of("llm_demo") and "objective" in imports_of("llm_demo")
    assert {"objective"} <= imports_of("sppo")


def test_the_math_needs_neither_gymnasium_nor_transformers():
    """objective.py and value.py import with torch alone; llm_demo.py never loads gymnasium."""
    code = ("import sys, objective, value, llm_demo; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'gymnasium', 'transformers', 'envs', 'sppo'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_estimator_table_says_what_each_algorithm_needs():
    from objective import ESTIMATORS
    assert {name: (e.critic, e.grouped) for name, e in ESTIMATORS.items()} == {
        "sppo": ("prompt", False), "ppo": ("step", False), "grpo": (None, True), "rloo": (None, True),
        "reinforce": (None, False)}


def test_the_worked_examples_in_the_estimators_docstrings():
    """The numbers each estimator's docstring promises, computed."""
    from objective import Baselines, estimate, gae_advantage, outcome_at_end
    close = lambda x, y: torch.testing.assert_close(x, torch.tensor(y), atol=1e-5, rtol=0)   # grpo divides by std + 1e-6
    R = torch.tensor([1.0, 0.0, 1.0])
    close(estimate("sppo", R, Baselines(prompt_value=torch.tensor([0.8, 0.3, 0.2]))), [0.2, -0.3, 0.8])
    G4 = torch.tensor([1.0, 0.0, 0.0, 0.0])
    close(estimate("grpo", G4, Baselines(group_size=4)), [1.5, -0.5, -0.5, -0.5])
    close(estimate("grpo", torch.zeros(4), Baselines(group_size=4)), [0.0, 0.0, 0.0, 0.0])
    close(estimate("rloo", G4, Baselines(group_size=4)), [1.0, -1 / 3, -1 / 3, -1 / 3])
    close(estimate("reinforce", R, Baselines()), [1.0, 0.0, 1.0])
    mask = torch.ones(3, 1)
    rewards = outcome_at_end(torch.tensor([1.0]), mask)
    close(rewards[:, 0], [0.0, 0.0, 1.0])
    values = torch.tensor([[0.5], [0.6], [0.9]])
    adv, returns = gae_advantage(rewards, values, mask, torch.zeros(1), 1.0, 1.0)
    close(adv[:, 0], [0.5, 0.4, 0.1])
    close(returns[:, 0], [1.0, 1.0, 1.0])
    close(estimate("ppo", torch.tensor([1.0]), Baselines(rewards=rewards, step_values=values, step_mask=mask,
                                                         last_value=torch.zeros(1)))[:, 0], [0.5, 0.4, 0.1])


def test_outcome_at_end_puts_the_outcome_on_each_episodes_last_real_step():
    from objective import outcome_at_end
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])   # lengths 2, 1, 3
    assert outcome_at_end(torch.tensor([1.0, 1.0, 0.0]), mask).tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
