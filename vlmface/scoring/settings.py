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
    min_cell_n: int = 10  # truths per class x group below which per-class rates and gaps are null
    max_group_values: int = 1000  # a group column with more distinct values is refused
    intersections: int = 2  # group columns crossed at most (2: pairs, 3: also triples)
    reference_group: tuple[str, str] | None = None  # (column, value) every group is compared to

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise VlmfaceError(f"confidence must be between 0 and 1 (got {self.confidence}); "
                               "e.g. 0.95 for 95% intervals")
        if self.n_boot < 1:
            raise VlmfaceError(f"n_boot must be at least 1 (got {self.n_boot}); 1000 is usual")
        if self.min_group_n < 0:
            raise VlmfaceError(f"min_group_n must be >= 0 (got {self.min_group_n})")
        if self.min_cell_n < 1:
            raise VlmfaceError(f"min_cell_n must be >= 1 (got {self.min_cell_n}); 10 is the default")
        if self.intersections not in (1, 2, 3):
            raise VlmfaceError(f"intersections must be 1, 2 or 3 (got {self.intersections})")
        if self.max_group_values < 2:
            raise VlmfaceError(f"max_group_values must be >= 2 (got {self.max_group_values})")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ci_method": "percentile bootstrap, resampled within groups"}
