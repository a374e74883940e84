"""The HTTP status of each of wfray's errors: the one table, looked up along the class's MRO.

The domain names its errors and their stable codes (wfray/domain/errors.py); how they read
over HTTP is decided here. Every branch of the tree under `WfrayError` has an entry, so a
new error falls under its base's status until it gets one of its own; a `WfrayError` with
no entry on its MRO (the base itself) is a server error.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from wfray.domain.errors import (
    ActiveRunsError,
    BacklogFullError,
    BackupError,
    BlobKeyError,
    BlobRootError,
    ClaimNotHeldError,
    CoordinatorUnavailableError,
    DefinitionError,
    EventError,
    IdempotencyConflictError,
    InputValidationError,
    InvalidClaimError,
    InvalidRunIdError,
    InvalidTransitionError,
    RunFailedError,
    RunNotFoundError,
    ScheduleNotFoundError,
    SchemaOutdatedError,
    StaleWriteError,
    StepError,
    StoreRejectedError,
    StoreUnavailableError,
    TooManyStreamsError,
    UniqueKeyError,
    UniqueRunError,
    UnknownWorkflowError,
    VersionMismatchError,
    WaitTimeoutError,
    WorkflowNotStartableError,
)

SERVER_ERROR = 500

HTTP_STATUS: Mapping[type[Exception], int] = MappingProxyType(
    {
        DefinitionError: 400,
        UnknownWorkflowError: 404,
        WorkflowNotStartableError: 403,  # a built-in task the operator did not open
        InputValidationError: 422,
        InvalidTransitionError: 409,
        StaleWriteError: 409,
        BacklogFullError: 429,
        IdempotencyConflictError: 409,
        UniqueRunError: 409,
        UniqueKeyError: 400,
        EventError: 400,
        TooManyStreamsError: 429,
        RunNotFoundError: 404,
        ScheduleNotFoundError: 404,
        ActiveRunsError: 409,
        RunFailedError: SERVER_ERROR,
        WaitTimeoutError: 504,
        CoordinatorUnavailableError: 503,
        StoreUnavailableError: 503,
        StoreRejectedError: 422,  # not an outage: the same request fails again
        SchemaOutdatedError: 503,
        VersionMismatchError: 503,  # until the actors run the caller's version
        BackupError: SERVER_ERROR,
        InvalidRunIdError: 400,
        BlobKeyError: 400,
        BlobRootError: SERVER_ERROR,
        # errors around steps reach HTTP only when an endpoint runs wfray's step-side code
        StepError: SERVER_ERROR,
        InvalidClaimError: 400,
        ClaimNotHeldError: 409,
    }
)


def http_status_of(error: type[BaseException]) -> int:
    """The status of the nearest class on `error`'s MRO that the table names (500 if none):
    a subclass answers as its base until it has an entry of its own, and an error Ray wraps
    (`RayTaskError(RunNotFoundError)`) as the error it wraps."""
    for cls in error.__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return SERVER_ERROR
