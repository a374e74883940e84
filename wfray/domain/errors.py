"""The one error tree of wfray: every error wfray raises is defined here, with its code.

    class                                          code
    WfrayError                                     wfray_error
     +-- DefinitionError                           invalid_definition
     |    +-- CycleError                           cycle
     +-- UnknownWorkflowError                      unknown_workflow
     |    +-- WorkflowNotStartableError            workflow_not_startable
     +-- InputValidationError                      invalid_input
     +-- InvalidTransitionError                    invalid_transition
     +-- StaleWriteError                           stale_write
     +-- BacklogFullError                          backlog_full
     +-- IdempotencyConflictError                  idempotency_conflict
     +-- UniqueRunError                            unique_run_exists
     +-- UniqueKeyError                            invalid_unique_key
     +-- EventError                                bad_event
     +-- TooManyStreamsError                       too_many_streams
     +-- RunNotFoundError                          run_not_found
     +-- ActiveRunsError                           active_runs
     +-- ScheduleNotFoundError                     schedule_not_found
     +-- RunFailedError                            run_failed
     +-- WaitTimeoutError                          wait_timeout
     +-- CoordinatorUnavailableError               coordinator_unavailable
     +-- StoreUnavailableError                     store_unavailable
     +-- StoreRejectedError                        store_rejected
     +-- SchemaOutdatedError                       schema_outdated
     +-- VersionMismatchError                      version_mismatch
     +-- BackupError                               backup_failed
     +-- InvalidRunIdError                         invalid_run_id
     +-- BlobKeyError                              invalid_blob_key
     +-- BlobRootError                             blob_root_not_shared
     +-- StepError                                 step_error
          +-- RetryLater                           retry_later
          +-- ResultNotStorableError               result_not_storable
          +-- BlobWriteError                       blob_write_failed
          +-- ResultUnreadableError                result_unreadable
          +-- NonRetryableError                    non_retryable
               +-- InvalidClaimError               invalid_claim
               +-- ClaimNotHeldError               claim_not_held
               +-- StepImportError                 step_import_error
               +-- ResultNotSerializableError      result_not_serializable
               +-- ResultTooLargeError             result_too_large
               +-- ChildRunsFailedError            child_runs_failed
               +-- SecretNotFoundError             secret_not_found
               +-- DestinationRefusedError         http_destination_refused
               +-- EmailRefusedError               email_refused

Each class's docstring says what it means and is its default message. Its `code` is the
machine name callers match on (the HTTP API answers `{"error": {"code": ...}}`): unique,
and never changed once published, since clients break when a code changes. How an error
reads over HTTP (its status) is the HTTP entrypoint's concern
(wfray/entrypoints/http/errors.py); the domain knows nothing of HTTP.
"""

from __future__ import annotations


class WfrayError(Exception):
    """A wfray error."""

    code = "wfray_error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


# -- declaring and naming workflows -------------------------------------------------------


class DefinitionError(WfrayError):
    """The workflow definition is invalid."""

    code = "invalid_definition"


class CycleError(DefinitionError):
    """The workflow's steps form a cycle."""

    code = "cycle"


class UnknownWorkflowError(WfrayError):
    """No workflow of that name is known."""

    code = "unknown_workflow"


class WorkflowNotStartableError(UnknownWorkflowError):
    """This workflow cannot be started over this API."""

    code = "workflow_not_startable"


# -- submitting runs ----------------------------------------------------------------------


class InputValidationError(WfrayError):
    """The run input does not match the workflow's input model."""

    code = "invalid_input"


class InvalidTransitionError(WfrayError):
    """This status change is not allowed."""

    code = "invalid_transition"


class StaleWriteError(WfrayError):
    """The stored status changed under us (compare-and-set failed)."""

    code = "stale_write"


class BacklogFullError(WfrayError):
    """The queue backlog is full: retry later."""

    code = "backlog_full"

    def __init__(self, message: str | None = None, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IdempotencyConflictError(WfrayError):
    """This idempotency key was used for another request (workflow or input)."""

    code = "idempotency_conflict"


class UniqueRunError(WfrayError):
    """A run with this uniqueness key exists and the workflow's policy refuses another."""

    code = "unique_run_exists"

    def __init__(self, message: str | None = None, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id  # the run holding the key, when known


class UniqueKeyError(WfrayError):
    """A workflow's uniqueness key could not be computed from the input, or cannot be stored."""

    code = "invalid_unique_key"


class EventError(WfrayError):
    """The event cannot be published."""

    code = "bad_event"


# -- reading and awaiting runs ------------------------------------------------------------


class TooManyStreamsError(WfrayError):
    """This caller follows as many log streams as it may: close one, or retry later."""

    code = "too_many_streams"
    retry_after_s = 5.0


class RunNotFoundError(WfrayError):
    """No run with that id."""

    code = "run_not_found"


class ActiveRunsError(WfrayError):
    """Some of the runs to erase are still active: cancel them first."""

    code = "active_runs"


class ScheduleNotFoundError(WfrayError):
    """No schedule of that name."""

    code = "schedule_not_found"


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


# -- the coordinator and the store --------------------------------------------------------


class CoordinatorUnavailableError(WfrayError):
    """wfray's coordinator is not running: start it (`wfray start`, `wfray.connect()`)."""

    code = "coordinator_unavailable"


class StoreUnavailableError(WfrayError):
    """The database cannot be reached."""

    code = "store_unavailable"


class StoreRejectedError(WfrayError):
    """The database refused to store the data (not an outage: retrying cannot help)."""

    code = "store_rejected"


class SchemaOutdatedError(WfrayError):
    """The database schema is not at the revision this wfray expects: run `wfray db upgrade`."""

    code = "schema_outdated"


class VersionMismatchError(WfrayError):
    """A wfray actor found on the cluster runs another wfray version or store schema than
    this process: `wfray upgrade` with this version moves them to it."""

    code = "version_mismatch"


class BackupError(WfrayError):
    """A backup could not be taken, or a backup cannot be restored (it is incomplete or
    corrupt, or the target is not empty)."""

    code = "backup_failed"


# -- data placement: ids, blob keys and the blob root ---------------------------------------


class InvalidRunIdError(WfrayError):
    """The run id is not allowed: use 1-200 letters, digits and `_ . : @ + = -`, starting
    with a letter or a digit."""

    code = "invalid_run_id"


class BlobKeyError(WfrayError):
    """The blob key is not a plain relative path under the blob root."""

    code = "invalid_blob_key"


class BlobRootError(WfrayError):
    """The blob root is a folder on one node, but steps run on several."""

    code = "blob_root_not_shared"


# -- steps: raised by a step to steer its retries, or by wfray around a step ---------------


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


class ResultNotStorableError(StepError):
    """The step's result cannot be stored as it is (never altered): the attempt fails and
    its retry policy decides what follows."""

    code = "result_not_storable"


class BlobWriteError(StepError):
    """The step's result could not be written to the blob store: the attempt is retried."""

    code = "blob_write_failed"


class ResultUnreadableError(StepError):
    """An argument of the step (an upstream result) could not be read from the store or the
    blob store: the attempt fails and its retry policy decides what follows."""

    code = "result_unreadable"


class StepImportError(NonRetryableError):
    """The step's code cannot be imported on this worker."""

    code = "step_import_error"


class ResultNotSerializableError(NonRetryableError):
    """The step returned a value that cannot be serialised to JSON."""

    code = "result_not_serializable"


class ResultTooLargeError(NonRetryableError):
    """The step's result is larger than the configured maximum (WFRAY_MAX_RESULT_BYTES)."""

    code = "result_too_large"


class ChildRunsFailedError(NonRetryableError):
    """Child runs failed and the parent step's policy is to fail with them."""

    code = "child_runs_failed"


class SecretNotFoundError(NonRetryableError):
    """The secret is not configured where the step runs."""

    code = "secret_not_found"


class DestinationRefusedError(NonRetryableError):
    """http_request refused to connect to this address."""

    code = "http_destination_refused"


class EmailRefusedError(NonRetryableError):
    """The message or its SMTP settings are not allowed here."""

    code = "email_refused"


# -- claims (domain/claims.py) ------------------------------------------------------------


class InvalidClaimError(NonRetryableError):
    """The claim key, TTL or result cannot be used."""

    code = "invalid_claim"


class ClaimNotHeldError(NonRetryableError):
    """This step does not hold the claim (another holder took it over after this one's TTL
    passed, or it never claimed the key)."""

    code = "claim_not_held"
