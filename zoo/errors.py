"""Errors a person can cause. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for: a bad name, path, override or file.

    Raise it with a message that says what was wrong and, where there are some,
    the valid choices. The CLI prints ``error: <message>`` and exits with status 2.
    """

    exit_code = 2


class DataError(UserError):
    """A dataset that is missing, in the wrong layout, or unreadable."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, or not a zoo checkpoint."""


def choices(names) -> str:
    """Format a list of valid names for an error message."""
    return ", ".join(sorted(names))


class TrainingCrashed(Exception):
    """An unexpected exception stopped a training run; raised ``from`` the original.

    ``checkpoint`` is the ``last.pt`` of the last completed step (None when none was
    written yet) and ``step`` the step it holds. The CLI prints the original traceback, then one line saying where that
    checkpoint is and how to resume from it, and exits with status 1.
    """

    def __init__(self, message: str, checkpoint: str | None = None, step: int | None = None) -> None:
        super().__init__(message)
        self.checkpoint, self.step = checkpoint, step
