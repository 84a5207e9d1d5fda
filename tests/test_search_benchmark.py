"""The tabular search benchmark keeps its finished runs and reuses only matching ones."""

import json
import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import nb201_search  # noqa: E402


def table_rows(path):
  return [line for line in path.read_text().splitlines() if line.startswith("| random")]


def test_runs_are_recorded_reused_and_rerun_when_a_setting_changes(tmp_path, capsys):
  runs = tmp_path / "runs.jsonl"
  common = ["--strategies=random", "--processes=1", f"--runs={runs}", "--budgets=10,20"]
  nb201_search.main(["--seeds=0:2", f"--out={tmp_path / 'a.md'}", *common])
  first = [json.loads(line) for line in runs.read_text().splitlines()]
  assert sorted(r["seed"] for r in first) == [0, 1]
  assert all(len(r["scores"]) == len(r["reports"]) == 20 for r in first)

  # A crash while appending leaves a partial line: it is skipped, not fatal.
  with runs.open("a") as f:
    f.write('{"strategy": "random", "seed": 2, "scor')
  capsys.readouterr()
  nb201_search.main(["--seeds=0:3", f"--out={tmp_path / 'b.md'}", *common])
  out = capsys.readouterr().out
  assert "2 runs reused" in out and "1 to run" in out and "not a run record" in out
  # Seeds 0-1 read back give the same table rows as when they were run.
  nb201_search.main(["--seeds=0:2", f"--out={tmp_path / 'c.md'}", *common])
  assert "2 runs reused" in capsys.readouterr().out
  assert table_rows(tmp_path / "a.md")[0].rsplit("|", 2)[0] == \
      table_rows(tmp_path / "c.md")[0].rsplit("|", 2)[0]

  # A changed setting of the strategy reruns; another strategy's section does not matter.
  nb201_search.main(["--seeds=0:2", f"--out={tmp_path / 'd.md'}", "--set=nao.top_k=7",
                     *common])
  assert "2 runs reused" in capsys.readouterr().out
  nb201_search.main(["--seeds=0:2", f"--out={tmp_path / 'e.md'}",
                     "--set=evaluator.seconds_per_query=0.0001", *common])
  assert "0 runs reused" in capsys.readouterr().out


def test_settings_are_overridden_on_tuning_seeds_only(tmp_path):
  with pytest.raises(SystemExit):
    nb201_search.main(["--seeds=1000:1001", "--strategies=random", "--set=nao.top_k=7",
                       f"--runs={tmp_path / 'r.jsonl'}", f"--out={tmp_path / 'a.md'}"])
  with pytest.raises(ValueError, match="no field 'nao.no_such'"):
    nb201_search.benchmark_config("nb201-c10", "nao", ("nao.no_such=1",))


def test_nao_lead_is_the_difference_of_means_with_its_standard_error():
  import numpy as np  # pylint: disable=g-import-not-at-top
  nao = np.array([[1.0, 2.0], [3.0, 4.0]])
  other = np.array([[0.0, 1.0], [0.0, 3.0], [3.0, 2.0]])
  text = nb201_search.nao_lead({"nao": {"curve": nao}, "local": {"curve": other}}, [1, 2])
  # Budget 1: 2 - 1 = 1, sqrt(2/2 + 3/3) = 1.41; budget 2: 3 - 2 = 1, sqrt(2/2 + 1/3) = 1.15.
  assert text.splitlines()[-1] == "| local | +1.00 ± 1.41 | +1.00 ± 1.15 |"
  assert nb201_search.nao_lead({"local": {"curve": other}}, [1]) == ""


def test_compare_variants_pairs_runs_by_seed(tmp_path, capsys):
  import compare_variants  # pylint: disable=g-import-not-at-top
  variant = "evaluator.seconds_per_query=0.0001"
  prints = [nb201_search.fingerprint("nb201-c10", "random", overrides)
            for overrides in ((), (variant,))]
  # Seed -> (default run's scores, variant run's); reports are the scores + 1.
  runs = {0: ([1.0, 3.0, 2.0], [2.0, 2.0, 5.0]),
          1: ([4.0, 1.0, 1.0], [1.0, 3.0, 3.0]),
          2: ([0.0, 0.0, 0.0], [9.0, 9.0, 9.0]),  # Variant run too short: left out.
          1000: ([0.0, 0.0, 0.0], [9.0, 9.0, 9.0])}  # Not a tuning seed: left out.
  lines = []
  for seed, pair in runs.items():
    for fingerprint, scores in zip(prints, pair):
      if seed == 2 and fingerprint == prints[1]:
        scores = scores[:2]
      lines.append(json.dumps(dict(strategy="random", fingerprint=fingerprint, seed=seed,
                                   scores=scores, reports=[s + 1 for s in scores])))
  (tmp_path / "nb201_c10.jsonl").write_text("\n".join(lines) + "\n")
  compare_variants.main([f"--set={variant}", "--strategy=random", "--benchmarks=nb201-c10",
                         "--budgets=2,3", f"--runs_dir={tmp_path}"])
  rows = [line for line in capsys.readouterr().out.splitlines()
          if line.startswith(("| nb201", "| pooled"))]
  # Budget 2, variant minus default: seed 0 best 2 - 3, seed 1 best 3 - 4.
  # Budget 3: seed 0 5 - 3, seed 1 3 - 4: mean 0.5, se std([2, -1]) / sqrt(2) = 1.5.
  # Pooled at budget 2: -1 over the std of the default's reports (4 and 5), 0.707.
  assert rows == ["| nb201-c10 | 2 | 2 | -1.000 ± 0.000 | 0 / 2 | -1.000 ± 0.000 |",
                  "| nb201-c10 | 3 | 2 | +0.500 ± 1.500 | 1 / 1 | +0.500 ± 1.500 |",
                  "| pooled (effect size) | 2 | 2 | -1.414 ± 0.000 | 0 / 2 | |",
                  "| pooled (effect size) | 3 | 2 | +0.707 ± 2.121 | 1 / 1 | |"]


def test_nao_candidates_reports_each_nao_round(capsys):
  import nao_candidates  # pylint: disable=g-import-not-at-top
  nao_candidates.main(["--benchmark=nb201-c10", "--seed=0", "--budget=30", "--bananas",
                       "--bananas_inputs=path,embedding",
                       "--set=nao.initial_pool=10", "--set=nao.controller.train.epochs=2"])
  out = capsys.readouterr().out
  rows = [line.strip("|").split("|") for line in out.splitlines()
          if line.startswith("| ") and not line.startswith("| evals")]
  assert [int(row[0]) for row in rows] == [10, 20]  # The rounds after the random 10.
  for row in rows:
    decoded, neighbours, asked_decoded = int(row[1]), int(row[2]), int(row[3])
    assert decoded + neighbours >= 10 and 0 <= asked_decoded <= min(decoded, 10)
    best_candidate, best_asked, best_so_far = float(row[6]), float(row[7]), float(row[10])
    assert best_asked <= best_candidate and best_asked <= best_so_far
    assert len(row) == 17  # Three columns for each of BANANAS' two inputs.
    for first in (11, 14):
      tau_bananas, best_bananas = float(row[first]), float(row[first + 1])
      assert -1 <= tau_bananas <= 1 and best_bananas <= best_candidate
      # Asked only if a candidate.
      assert row[first + 2].strip() == "False" or row[8].strip() == "True"
  counts = re.search(r"a candidate in (\d+); NAO asked it in (\d+), BANANAS' ranking of the "
                     r"same candidates would have in (\d+), BANANAS' \(on embedding\) ranking "
                     r"of the same candidates would have in (\d+)", out)
  candidate, *asked = map(int, counts.groups())
  assert all(n <= candidate for n in asked)
