"""The ``serve`` extra: what serving needs beyond spanqa's own dependencies, and the error when it is missing."""

from __future__ import annotations

from spanqa.core.errors import SpanQAError

__all__ = ["MissingDependencyError"]


class MissingDependencyError(SpanQAError, ImportError):
    """Serving needs the ``serve`` extra."""

    @classmethod
    def of(cls, err: ImportError) -> MissingDependencyError:
        """The error for a failed import of one of the extra's packages.

        Args:
            err: The import error (its message names the missing package).
        """
        return cls(f'serving needs fastapi, uvicorn, pydantic-settings and prometheus-client: pip install "spanqa[serve]" ({err})')
