"""README's first two commands are the ones CI and users run."""

from tests.conftest import REPO


def test_readme_opens_with_main_and_test_commands():
  lines = [l for l in (REPO / "README.md").read_text().splitlines() if l.startswith("python3 -m venv")]
  main_command, test_command = lines[:2]
  assert "nao_jax.main --config=configs/" in main_command
  assert test_command.endswith("python -m pytest tests")
  # .ci/run runs the same install + test line inside its own fresh venv.
  ci = (REPO / ".ci" / "run").read_text()
  assert test_command.split("&& ", 2)[2] in ci
