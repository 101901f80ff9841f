"""Token usage, cost and the --max-cost budget of one API run.

Prices are USD per million tokens, `{input: X, output: Y}`, from the registry entry or the
`prices` option. Before a request is sent, its worst case (estimated prompt tokens + the full
max_tokens answer) is reserved against the budget; the measured usage replaces the reservation
when the answer arrives. A request whose worst case does not fit is not sent, so the budget is
never exceeded by requests this run sends (unless a server ignores max_tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmface.errors import BackendError


@dataclass(frozen=True)
class Prices:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens

    @classmethod
    def parse(cls, raw: Any, where: str) -> Prices | None:
        if raw is None:
            return None
        try:
            prices = cls(input=float(raw["input"]), output=float(raw["output"]))
        except (TypeError, KeyError, ValueError):
            raise BackendError(f"{where}: prices must look like {{input: 2.5, output: 10.0}} "
                               f"(USD per million tokens), got {raw!r}") from None
        if prices.input < 0 or prices.output < 0:
            raise BackendError(f"{where}: prices cannot be negative, got {raw!r}")
        return prices

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


class Ledger:
    """What this run spent, and reservations for the requests in flight."""

    def __init__(self, prices: Prices | None, max_cost: float | None):
        self.prices = prices
        self.max_cost = max_cost
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.usage_missing = 0  # answers without a usage block: counted at their estimate
        self.spent = 0.0
        self.reserved = 0.0
        self.max_prompt_tokens_seen = 0

    def estimate(self, input_tokens: int, max_tokens: int) -> float:
        if self.prices is None:
            return 0.0
        prompt = max(input_tokens, int(1.25 * self.max_prompt_tokens_seen))
        return self.prices.cost(prompt, max_tokens)

    def reserve(self, estimate: float) -> bool:
        """Hold `estimate` for a request about to be sent; False if it might break the budget."""
        if self.max_cost is not None and self.spent + self.reserved + estimate > self.max_cost:
            return False
        self.reserved += estimate
        return True

    def release(self, estimate: float) -> None:
        self.reserved = max(0.0, self.reserved - estimate)

    def settle(self, estimate: float, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        """Replace a reservation by what the answer really cost."""
        self.release(estimate)
        if prompt_tokens is None or completion_tokens is None:
            self.usage_missing += 1
            self.spent += estimate
            return
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.max_prompt_tokens_seen = max(self.max_prompt_tokens_seen, prompt_tokens)
        if self.prices is not None:
            self.spent += self.prices.cost(prompt_tokens, completion_tokens)

    def summary(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "responses_without_usage": self.usage_missing,
                "cost_usd": round(self.spent, 6) if self.prices is not None else None,
                "max_cost_usd": self.max_cost,
                "prices_usd_per_million_tokens": ({"input": self.prices.input, "output": self.prices.output}
                                                  if self.prices is not None else None)}
