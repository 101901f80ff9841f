"""Overall metrics of a numeric attribute (e.g. age in years): MAE and CS@5.

MAE is over answered items (an invalid or refused answer has no error to average);
CS@5 is the share of scored items whose absolute error is at most 5, so a
non-answer counts as a miss unless `answered_only` is set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlmface.scoring.bootstrap import mean_samples, percentile_ci, proportion_samples, rng_for
from vlmface.scoring.classification import status_block
from vlmface.scoring.load import OK, AttributeData
from vlmface.scoring.outcomes import Outcomes, counts, ratio
from vlmface.scoring.settings import ScoreSettings


def overall_numeric(data: AttributeData, out: Outcomes, settings: ScoreSettings) -> dict[str, Any]:
    table = counts(out, np.zeros(len(out.status), dtype=np.int64), 1)
    rng = rng_for(settings.seed, data.spec.name, "overall")
    errors = out.abs_error[out.status == OK]
    cs5 = proportion_samples(table["n_correct"], table["n"], settings.n_boot, rng)
    mae = mean_samples(errors, settings.n_boot, rng)
    result: dict[str, Any] = {  # .item() / .ravel(): the one group that is the whole set
        "n": int(table["n"].item()),
        "n_answered": int(table["n_answered"].item()),
        "mae": float(errors.mean()) if errors.size else None,
        "mae_ci": percentile_ci(mae, settings.confidence).tolist(),
        "cs5": float(ratio(table["n_correct"], table["n"]).item()),
        "cs5_ci": percentile_ci(cs5, settings.confidence).ravel().tolist(),
    }
    result.update(status_block(table))
    return result
