"""The one error tree of wfray.

    WfrayError
     +-- DefinitionError           a workflow or step is declared wrongly
     |    +-- CycleError           the DAG has a cycle (the path is named)
     +-- UnknownWorkflowError      no workflow of that name (or version) is known
     +-- InputValidationError      a run input does not fit the workflow's model
     +-- InvalidTransitionError    a status change the transition table forbids
     +-- StaleWriteError           a compare-and-set found another status
     +-- BacklogFullError          intake refused: retry later
 +-- IdempotencyConflictError  an idempotency key sent again with another request
     +-- UniqueRunError            a unique workflow's policy refused a second run
     +-- UniqueKeyError            a workflow's uniqueness key could not be computed or stored
 +-- TooManyStreamsError       a caller follows as many log streams as it may
     +-- RunNotFoundError          no run with that id
     +-- RunFailedError            the awaited run failed
     +-- WaitTimeoutError          the awaited run did not finish in time
     +-- StoreUnavailableError     the database cannot be reached
     +-- StoreRejectedError        the database refused the data (not an outage)
     +-- SchemaOutdatedError       the database schema is not at this wfray's revision
     +-- StepError                 raised inside steps to steer retries
     |    +-- NonRetryableError    fail now, do not retry
     |    +-- RetryLater           retry after a given delay
     |    +-- InvalidClaimError    a claim key, TTL or result that cannot be used
     |    +-- ClaimNotHeldError    a step marks done a claim it does not hold
     +-- InvalidRunIdError         a run id that could escape a path (refused at submission)
     +-- BlobKeyError              a blob key that is not a plain relative path
     +-- BlobRootError             a blob root the cluster's nodes do not all share

The class docstring is the default message; errors that map to HTTP carry a stable `code`.
"""

from __future__ import annotations


class WfrayError(Exception):
    """A wfray error."""

    code = "wfray_error"
    http_status = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class DefinitionError(WfrayError):
    """The workflow definition is invalid."""

    code = "invalid_definition"
    http_status = 400


class CycleError(DefinitionError):
    """The workflow's steps form a cycle."""

    code = "cycle"


class UnknownWorkflowError(WfrayError):
    """No workflow of that name is known."""

    code = "unknown_workflow"
    http_status = 404


class InputValidationError(WfrayError):
    """The run input does not match the workflow's input model."""

    code = "invalid_input"
    http_status = 422


class InvalidTransitionError(WfrayError):
    """This status change is not allowed."""

    code = "invalid_transition"
    http_status = 409


class StaleWriteError(WfrayError):
    """The stored status changed under us (compare-and-set failed)."""

    code = "stale_write"
    http_status = 409


class BacklogFullError(WfrayError):
    """The queue backlog is full: retry later."""

    code = "backlog_full"
    http_status = 429

    def __init__(self, message: str | None = None, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IdempotencyConflictError(WfrayError):
    """This idempotency key was used for another request (workflow or input)."""

    code = "idempotency_conflict"
    http_status = 409


class UniqueRunError(WfrayError):
    """A run with this uniqueness key exists and the workflow's policy refuses another."""

    code = "unique_run_exists"
    http_status = 409

    def __init__(self, message: str | None = None, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id  # the run holding the key, when known


class UniqueKeyError(WfrayError):
    """A workflow's uniqueness key could not be computed from the input, or cannot be stored."""

    code = "invalid_unique_key"
    http_status = 400


class TooManyStreamsError(WfrayError):
    """This caller follows as many log streams as it may: close one, or retry later."""

    code = "too_many_streams"
    http_status = 429
    retry_after_s = 5.0


class RunNotFoundError(WfrayError):
    """No run with that id."""

    code = "run_not_found"
    http_status = 404


class RunFailedError(WfrayError):
    """The run failed."""

    code = "run_failed"

    def __init__(self, message: str | None = None, run_id: str = "", status: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class WaitTimeoutError(WfrayError):
    """The run did not finish within the timeout."""

    code = "wait_timeout"
    http_status = 504


class CoordinatorUnavailableError(WfrayError):
    """wfray's coordinator is not running: start it (`wfray start`, `wfray.connect()`)."""

    code = "coordinator_unavailable"
    http_status = 503


class StoreUnavailableError(WfrayError):
    """The database cannot be reached."""

    code = "store_unavailable"
    http_status = 503


class StoreRejectedError(WfrayError):
    """The database refused to store the data (not an outage: retrying cannot help)."""

    code = "store_rejected"
    http_status = 422


class SchemaOutdatedError(WfrayError):
    """The database schema is not at the revision this wfray expects: run `wfray db upgrade`."""

    code = "schema_outdated"
    http_status = 503


class StepError(WfrayError):
    """Raised by a step to steer its retry policy."""

    code = "step_error"


class NonRetryableError(StepError):
    """The step failed in a way that retrying cannot fix."""

    code = "non_retryable"


class RetryLater(StepError):
    """The step asks to be retried after a delay."""

    code = "retry_later"

    def __init__(self, message: str | None = None, delay_s: float = 1.0) -> None:
        super().__init__(message)
        self.delay_s = delay_s


# -- data placement: ids, blob keys and the blob root ---------------------------------------


class InvalidRunIdError(WfrayError):
    """The run id is not allowed: use 1-200 letters, digits and `_ . : @ + = -`, starting
    with a letter or a digit."""

    code = "invalid_run_id"
    http_status = 400


class BlobKeyError(WfrayError):
    """The blob key is not a plain relative path under the blob root."""

    code = "invalid_blob_key"
    http_status = 400


class BlobRootError(WfrayError):
    """The blob root is a folder on one node, but steps run on several."""

    code = "blob_root_not_shared"


# -- claims (domain/claims.py) ------------------------------------------------------------


class InvalidClaimError(NonRetryableError):
    """The claim key, TTL or result cannot be used."""

    code = "invalid_claim"
    http_status = 400


class ClaimNotHeldError(NonRetryableError):
    """This step does not hold the claim (another holder took it over after this one's TTL
    passed, or it never claimed the key)."""

    code = "claim_not_held"
    http_status = 409
