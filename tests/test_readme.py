"""README: its first two commands are the ones CI and users run, and every Python
example in it runs as written."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_opens_with_main_and_test_commands():
  lines = [l for l in README.splitlines() if l.startswith("python3 -m venv")]
  main_command, test_command = lines[:2]
  assert "nao_jax.main --config=configs/" in main_command
  assert test_command.endswith("python -m pytest tests -n 2")
  # .ci/run runs the same install + test line inside its own fresh venv.
  ci = (REPO / ".ci" / "run").read_text()
  assert test_command.split("&& ", 2)[2] in ci


def test_readme_has_the_library_and_extending_examples():
  assert len(EXAMPLES) == 3
  assert "controller.fit" in EXAMPLES[1]
  assert all(f"{kind}.register(" in EXAMPLES[2] for kind in ("spaces", "strategies",
                                                              "evaluators"))


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_python_example_runs(index, tmp_path):
  # A fresh interpreter in an empty directory, as a user pasting the example.
  done = subprocess.run([sys.executable, "-c", EXAMPLES[index]], cwd=tmp_path,
                        capture_output=True, text=True, timeout=600,
                        env={**os.environ, "PYTHONPATH": str(REPO)})
  assert done.returncode == 0, done.stderr[-3000:]
  if index == 2:
    assert "best of 80: 1111111111111111 (16 on)" in done.stdout
