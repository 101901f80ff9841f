"""The knobs of one scoring pass; recorded in metrics.json so a score can be reproduced."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vlmface.errors import VlmfaceError


@dataclass(frozen=True)
class ScoreSettings:
    min_group_n: int = 30
    n_boot: int = 1000
    seed: int = 0
    answered_only: bool = False
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise VlmfaceError(f"confidence must be between 0 and 1 (got {self.confidence}); "
                               "e.g. 0.95 for 95% intervals")
        if self.n_boot < 1:
            raise VlmfaceError(f"n_boot must be at least 1 (got {self.n_boot}); 1000 is usual")
        if self.min_group_n < 0:
            raise VlmfaceError(f"min_group_n must be >= 0 (got {self.min_group_n})")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ci_method": "percentile bootstrap, resampled within groups"}
