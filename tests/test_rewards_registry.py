"""rewards.registry: the saved-model folder that training and scoring share, without a cycle;
and what the web side of rewards imports (no torch, no export code)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import rewards

CHECK = """
import sys
import rewards.registry
assert "torch" not in sys.modules, "registry imports torch at import time"
import rewards.scoring
assert "rewards.train" not in sys.modules, "scoring imports train"
"""


def imported_modules(module: str) -> set[str]:
    """Every module a rewards module imports, at its top or inside a function."""
    tree = ast.parse((Path(rewards.__file__).parent / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_scoring_and_the_registry_never_import_training():
    for module in ("scoring", "registry"):
        assert not {".train", "rewards.train"} & imported_modules(module), module


def test_scoring_loads_without_training_and_the_registry_without_torch():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


WEB = """
import sys
import django
django.setup()
import rewards.services, rewards.views, rewards.base_models
heavy = {"torch", "transformers", "pyarrow", "numpy", "feedback_api.datasets"} & set(sys.modules)
assert not heavy, heavy
"""


def test_the_web_side_of_rewards_imports_neither_torch_nor_the_export_code():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run([sys.executable, "-c", WEB], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
