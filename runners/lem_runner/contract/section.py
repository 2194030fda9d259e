"""The base of every config section: unknown keys refused, values frozen once validated.

Its own module so a backend's config section (backends/<name>/config.py) can subclass it without importing the
experiment model that is assembled from those sections.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
