"""Where results live on disk."""

from llenergymeasure.results.repository import FileResultsRepository, ResultsRepository

__all__ = ["FileResultsRepository", "ResultsRepository"]
