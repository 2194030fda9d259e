"""A length drawn per request or per turn (``serving.input_tokens``, ``output_tokens``, a conversation's turns and
messages): its own module, so the serving and conversation sections both build on it without importing each other."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LengthDistribution(BaseModel):
    """A token length per request: ``fixed`` (``value``), ``uniform`` (``min``..``max``), ``normal`` (``mean``,
    ``std``) or ``lognormal`` (``mean``, ``sigma``: the underlying normal's mean of ln(length) is chosen so the
    lengths' median is ``mean``), the last two clipped to ``min``..``max``. Drawn with the serving seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dist: Literal["fixed", "uniform", "normal", "lognormal"] = "fixed"
    value: int | None = Field(None, ge=1, le=131072, description="the length (dist: fixed)")
    mean: float | None = Field(None, gt=0, le=131072, description="mean (normal) or median (lognormal) length")
    std: float | None = Field(None, ge=0, le=131072, description="standard deviation (normal)")
    sigma: float | None = Field(None, gt=0, le=10, description="standard deviation of ln(length) (lognormal)")
    min: int = Field(1, ge=1, le=131072, description="lower bound (uniform, and the clip of normal/lognormal)")
    max: int = Field(131072, ge=1, le=131072, description="upper bound (uniform, and the clip of normal/lognormal)")

    @model_validator(mode="after")
    def _needs(self) -> LengthDistribution:
        need = {"fixed": ["value"], "uniform": [], "normal": ["mean", "std"], "lognormal": ["mean", "sigma"]}[self.dist]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"dist '{self.dist}' needs {', '.join(missing)}")
        if self.min > self.max:
            raise ValueError(f"min {self.min} exceeds max {self.max}")
        if self.dist == "uniform" and "max" not in self.model_fields_set:
            raise ValueError("dist 'uniform' needs max")
        return self
