"""Search quality per evaluation on NAS-Bench-Macro: NAO against every baseline.

  python benchmarks/macro_search.py            # reporting seeds 1000-1099
  python benchmarks/macro_search.py --quick    # tuning seeds 0-19

``benchmarks/nb201_search.py --benchmark=macro`` with the same flags; see there.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import nb201_search  # noqa: E402

if __name__ == "__main__":
  nb201_search.main(benchmark="macro")
