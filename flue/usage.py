"""Token and cost usage, in Flue's wire shape (``PromptUsage``).

``{input, output, cacheRead, cacheWrite, totalTokens, cost: {input, output,
cacheRead, cacheWrite, total}}``: ``input`` counts the prompt tokens that were
*not* read from a provider's prompt cache (OpenAI reports cached tokens inside
``prompt_tokens``; providers subtract them before building a ``Usage``),
``totalTokens`` is the sum of the four counts, and ``cost`` is in the unit of
the model's price table (USD for the catalog; see :mod:`flue.models.catalog`).
Providers report tokens only; the harness prices them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Cost(BaseModel):
    model_config = _CONFIG
    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0
    total: float = 0.0

    # Sums and prices of validated values are built unvalidated (model_construct): they are the hot
    # path's most frequent models (several per turn), and their fields are numbers by construction.
    def __add__(self, other: Cost) -> Cost:
        return Cost.model_construct(
            input=self.input + other.input,
            output=self.output + other.output,
            cache_read=self.cache_read + other.cache_read,
            cache_write=self.cache_write + other.cache_write,
            total=self.total + other.total,
        )


class Usage(BaseModel):
    model_config = _CONFIG
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    total_tokens: int = 0
    cost: Cost = Field(default_factory=Cost)

    @classmethod
    def of(cls, input: int = 0, output: int = 0, cache_read: int = 0, cache_write: int = 0) -> Usage:
        """Token counts with ``totalTokens`` filled in (cost is added by pricing)."""
        return cls(
            input=input, output=output, cache_read=cache_read, cache_write=cache_write,
            total_tokens=input + output + cache_read + cache_write,
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage.model_construct(
            input=self.input + other.input,
            output=self.output + other.output,
            cache_read=self.cache_read + other.cache_read,
            cache_write=self.cache_write + other.cache_write,
            total_tokens=self.total_tokens + other.total_tokens,
            cost=self.cost + other.cost,
        )

    def wire(self) -> dict[str, object]:
        """``model_dump(by_alias=True)``, spelled out (it is called for every event that carries usage)."""
        c = self.cost
        return {"input": self.input, "output": self.output, "cacheRead": self.cache_read,
                "cacheWrite": self.cache_write, "totalTokens": self.total_tokens,
                "cost": {"input": c.input, "output": c.output, "cacheRead": c.cache_read,
                         "cacheWrite": c.cache_write, "total": c.total}}


#: No usage, for wire forms of messages without any (``NO_USAGE.wire()``: fresh dicts). Shared: never
#: hand it on as a value someone may keep or change (make a ``Usage()`` for that).
NO_USAGE = Usage()


class ModelPrices(BaseModel):
    """Prices in USD (or the table's unit) per **million** tokens, as Flue's model tables give them."""

    model_config = ConfigDict(extra="forbid")
    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cache_read: float = Field(0.0, ge=0)
    cache_write: float = Field(0.0, ge=0)

    def price(self, usage: Usage) -> Usage:
        """``usage`` with its ``cost`` computed from these prices."""
        rate = 1e-6
        cost = Cost.model_construct(
            input=usage.input * self.input * rate,
            output=usage.output * self.output * rate,
            cache_read=usage.cache_read * self.cache_read * rate,
            cache_write=usage.cache_write * self.cache_write * rate,
        )
        cost.total = cost.input + cost.output + cost.cache_read + cost.cache_write
        return usage.model_copy(update={"cost": cost})
