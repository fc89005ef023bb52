"""Domain exceptions of both planes; control maps them once to JSON errors with a stable code."""

from __future__ import annotations


class BiplaneError(Exception):
    """Base of every expected error. `code` is stable and part of the API."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, pointer: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer


class PlanError(BiplaneError):
    """A graph that fails validation; pointer names the offending part (JSON pointer)."""

    code = "invalid_graph"
    status = 422


class NotFound(BiplaneError):
    code = "not_found"
    status = 404


class TaskInputError(BiplaneError):
    """Bad input found by a task: the job fails without retry."""

    code = "task_input"


class JobCanceled(BiplaneError):
    """Raised inside a task when the job's cancel flag is set."""

    code = "canceled"
    status = 409


class StorageError(BiplaneError):
    code = "storage_error"
    status = 503
