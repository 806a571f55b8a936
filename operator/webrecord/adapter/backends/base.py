"""The one interface every adapter backend implements.

The HTTP layer (adapter.server) validates the protocol body, authenticates the caller and then
calls exactly these methods; a backend never sees protocol (PascalCase) shapes, only the models of
`webrecord.api.models`. Ownership is enforced by the backend because only it knows where the owner
is stored (a SQLite column for `local`, a label/annotation on the WebRecording for `kubernetes`):
a task owned by another key must behave exactly like an unknown one (`TaskNotFound`), so callers
cannot probe for other tenants' task ids.

Errors are raised as the `BackendError` subclasses below; the server maps them to ErrorCodes.

Construction: each backend module exposes `create(settings: AdapterSettings) -> Backend`
(see `adapter.backends.create_backend`). The task id is chosen by the adapter (`wr-` + 24 hex
digits, a valid Kubernetes name) and passed in `RecordingTask.task_id`; for `kubernetes` it is the
WebRecording's name. The owner is an ApiAppKey (or ANONYMOUS_OWNER); it may contain any
printable characters, so store it in an annotation and, if a label is needed for listing, use
`owner_label(owner)`.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass, field
from typing import Any

from webrecord.api.models import Action, LiveOutput, Phase, RecorderStatus, RecordingTask

# Owner used when authentication is switched off: every task belongs to it.
ANONYMOUS_OWNER = "anonymous"


def owner_label(owner: str) -> str:
    """A label-safe, stable form of an owner key (63 chars max, [a-z0-9])."""
    return hashlib.sha256(owner.encode()).hexdigest()[:40]


class BackendError(Exception):
    """Base of the errors a backend raises on purpose; `message` is shown to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TaskNotFound(BackendError):
    """No task with this id, or it belongs to another key (indistinguishable on purpose)."""


class ActionNotAllowed(BackendError):
    """The control does not fit the task's status (Resume while recording, Pause after finish)."""

    def __init__(self, message: str, status: Phase | None = None) -> None:
        super().__init__(message)
        self.status = status


class CapacityExceeded(BackendError):
    """The backend refuses new tasks for now (queue full, quota reached)."""


class BackendUnavailable(BackendError):
    """A dependency (recorder process, kube-apiserver) did not answer; retrying may work."""


@dataclass
class TaskPage:
    """One page of a List: the caller's tasks, newest first."""

    tasks: list[RecorderStatus] = field(default_factory=list)
    total: int = 0
    offset: int = 0
    limit: int = 20


# Which controls fit which status. Shared by every backend (and by the recorder's own checks) so
# that `local` and `kubernetes` refuse the same things with the same words.
_ALLOWED: dict[Action, frozenset[Phase]] = {
    # Before the first frame a Pause is kept: the recording starts paused.
    Action.PAUSE: frozenset({Phase.NORMAL, Phase.RECORDING}),
    # ... and a Resume before the first frame takes that Pause back (the recorder judges).
    Action.RESUME: frozenset({Phase.NORMAL, Phase.PAUSED}),
    Action.REFRESH: frozenset({Phase.NORMAL, Phase.RECORDING, Phase.PAUSED}),
    Action.STOP: frozenset({Phase.NORMAL, Phase.RECORDING, Phase.PAUSED}),
    Action.CANCEL: frozenset({Phase.NORMAL, Phase.RECORDING, Phase.PAUSED}),
}


# UpdateLive (extension): receivers of a recording that runs; before the first frame the task
# may still wait in a queue (local) or for its pod, and after it there is nothing to stream.
UPDATE_LIVE = "UpdateLive"
_LIVE_ALLOWED = frozenset({Phase.RECORDING, Phase.PAUSED})


def check_action(action: Action, status: Phase) -> None:
    """Raise ActionNotAllowed when `action` does not fit `status`, with a message naming both."""
    _check(action.value, _ALLOWED[action], status)


def check_live_update(status: Phase) -> None:
    """UpdateLive's rule, refused in the words of the controls' (`check_action`)."""
    _check(UPDATE_LIVE, _LIVE_ALLOWED, status)


def _check(name: str, allowed: frozenset[Phase], status: Phase) -> None:
    if status not in allowed:
        wanted = ", ".join(sorted(p.value for p in allowed))
        raise ActionNotAllowed(
            f"{name} is not allowed while the task is '{status.value}' (allowed when: {wanted})",
            status,
        )


class Backend(abc.ABC):
    """Runs recording tasks. All methods are coroutines and safe to call concurrently."""

    name: str = "abstract"

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Called once before serving: connect, recover state after a restart."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called once at shutdown. Must not cancel running recordings (a restart re-attaches)."""

    @abc.abstractmethod
    async def start(self, task: RecordingTask, owner: str) -> RecorderStatus:
        """Create the task (id chosen by the caller, `task.create_time` set) and start or queue it.

        Returns the initial status (`normal`). Raises CapacityExceeded, BackendUnavailable.
        """

    @abc.abstractmethod
    async def control(self, task_id: str, owner: str, action: Action) -> RecorderStatus:
        """Apply Pause/Resume/Refresh/Stop/Cancel; returns the status after it took effect.

        Each call is a new control (two Refreshes refresh twice). Raises TaskNotFound,
        ActionNotAllowed (use `check_action`), BackendUnavailable.
        """

    @abc.abstractmethod
    async def set_live(self, task_id: str, owner: str, outputs: list[LiveOutput]) -> RecorderStatus:
        """UpdateLive: the task's live receivers become exactly `outputs` (validated already:
        URLs parsed and judged, at most MAX_LIVE_OUTPUTS, none twice). Idempotent. Returns the
        status after the change was handed on. Raises TaskNotFound, ActionNotAllowed (use
        `check_live_update`), BackendUnavailable.
        """

    @abc.abstractmethod
    async def describe(self, task_id: str, owner: str) -> RecorderStatus:
        """The task's current status (times, result). Raises TaskNotFound."""

    @abc.abstractmethod
    async def list(self, owner: str, offset: int, limit: int) -> TaskPage:
        """The owner's tasks, newest first, `limit` of them starting at `offset`."""

    def metric_collectors(self) -> list[Any]:
        """Prometheus collectors of this backend's gauges (read at scrape time)."""
        return []

    async def health(self) -> dict[str, object]:
        """Small JSON-able summary for GET /healthz; raise BackendUnavailable when unhealthy."""
        return {"backend": self.name}
