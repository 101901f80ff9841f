"""The seven bugs of issue 24's planted-bug check, planted again one at a time (not CI).

Each bug is written into a scratch copy of the repository (the working tree is never touched; the
faces linked as ../shared), the tests that must catch it run there, and the script prints CAUGHT
(tests failed, with the first failing test) or MISSED per bug; exit status 1 if any is missed.

    python benchmarks/planted_bugs.py

A bug whose code line moved is reported as "cannot plant" (update its text here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation import scratch_copy  # noqa: E402  (the same scratch copy as the mutants')

#: (bug, file, original text, planted text, the tests that must fail)
BUGS = [
    ("fsync removed", "vlmface/predictions.py", "            os.fsync(fd)\n", "            pass\n",
     ["tests/test_predictions_durability.py"]),
    ("truncated last line kept on resume", "vlmface/predictions.py",
     "            self._drop_truncated_tail()\n", "            pass\n", ["tests/test_predictions_durability.py"]),
    ("binomial(n - 1, p)", "vlmface/scoring/bootstrap.py", "rng.binomial(n, p, size=",
     "rng.binomial(n - 1, p, size=", ["tests/test_scoring_bootstrap.py"]),
    ("gap CI over all groups", "vlmface/scoring/groups.py", "spread_samples(score.samples[:, eligible])",
     "spread_samples(score.samples)", ["tests/test_scoring_metrics.py"]),
    ("macro-F1 over truth classes only", "vlmface/scoring/classification.py",
     'scores["f1"][present | (scores["predicted"] > 0)]', 'scores["f1"][present]',
     ["tests/test_scoring_metrics.py"]),
    ("fear/disgust synonyms swapped", "vocabularies/faces.yaml",
     "  - [fear, fearful, afraid, scared]\n  - [disgust, disgusted]\n",
     "  - [fear, disgusted]\n  - [disgust, fearful, afraid, scared]\n",
     ["tests/test_vocabulary_coverage.py", "tests/test_parse.py"]),
    ("flip CI from drop draws", "vlmface/perturb/stats.py", "flip_ci = percentile_ci(group.flip_draws,",
     "flip_ci = percentile_ci(group.drop_draws,", ["tests/test_perturb_analysis.py"]),
]


def plant_and_test(name: str, path: str, old: str, new: str, tests: list[str]) -> bool:
    """True when the tests fail with the bug planted."""
    work = scratch_copy()
    try:
        text = (work / path).read_text(encoding="utf-8")
        if text.count(old) != 1:
            print(f"{name}: cannot plant ({path} holds the original text {text.count(old)} times, not once)")
            return False
        (work / path).write_text(text.replace(old, new), encoding="utf-8")
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                                cwd=work, env={**os.environ, "PYTHONPATH": str(work)}, capture_output=True, text=True)
        failed = [line.split(" ")[1] for line in result.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
        print(f"{name}: {'CAUGHT by ' + failed[0] if result.returncode and failed else 'MISSED'}", flush=True)
        return bool(result.returncode and failed)
    finally:
        shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    caught = [plant_and_test(*bug) for bug in BUGS]
    print(f"{sum(caught)} of {len(BUGS)} planted bugs caught")
    sys.exit(0 if all(caught) else 1)
