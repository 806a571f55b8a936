"""Operator settings: environment variables with the WEBRECORD_OPERATOR_ prefix.

The chart sets these from its values; tests set them to short timeouts and temp paths.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from webrecord.envlist import split_list


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEBRECORD_OPERATOR_", extra="ignore")

    # The recorder pod.
    recorder_image: str = "webrecord/recorder:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list)
    control_port: int = Field(8090, ge=1, le=65535)
    # Where the task file and token are mounted and where the recorder works. The defaults are
    # the container's paths (docs/contracts.md section 3); the end-to-end test, which runs the
    # pod's command as a local process, points them at a temp dir.
    mount_root: str = "/etc/webrecord"
    work_dir: str = "/data"
    tmp_dir: str = "/tmp"
    termination_log: str = "/dev/termination-log"
    pod_local_output: bool = Field(
        False, description="Accept tasks without Output.Cos/Vod although the recorder env has no "
        "WEBRECORD_OUTPUT_DIR (the video stays in the pod's emptyDir: tests only)")
    storage_secret: str | None = Field(
        None, description="Secret whose keys become the recorder's env (storage credentials)"
    )
    recorder_env: dict[str, str] = Field(
        default_factory=dict, description="Extra env for the recorder (JSON object)"
    )
    service_account: str | None = Field(None, description="Recorder pods' service account")
    # Chromium's own sandbox (a user, PID and network namespace per renderer, plus its seccomp
    # filters) needs clone(CLONE_NEWUSER), which the runtime's default seccomp profile refuses:
    # it runs under a Localhost profile that allows it (the chart ships one:
    # charts/webrecord/files/chromium-seccomp.json). Off: Chromium runs with --no-sandbox and the
    # pod's own restrictions (non-root, no capabilities, RuntimeDefault seccomp) are all there is.
    chromium_sandbox: bool = Field(
        False, description="Chromium's own sandbox in recorder pods (needs seccomp_profile)")
    seccomp_profile: str | None = Field(
        None, description="Recorder pods' Localhost seccomp profile, relative to the kubelet's "
        "seccomp directory (e.g. webrecord/chromium.json); unset: RuntimeDefault")
    node_selector: dict[str, str] = Field(default_factory=dict)
    priority_class: str | None = None
    work_dir_size_limit: str = "20Gi"

    # Requests are the recording's measured cost (webrecord.api.cost, WEBRECORD_COST_*);
    # limits a multiple of them, /dev/shm scales with the page's pixels.
    shm_base_mi: int = Field(256, ge=64)
    shm_per_mpixel_mi: int = Field(128, ge=0)
    cpu_limit_factor: float = Field(2.0, ge=1.0)
    memory_limit_factor: float = Field(2.0, ge=1.0)

    # Buckets a WebRecording may name in spec.output.cos.bucket; empty: any bucket the
    # storage credentials reach. A JSON list or "a,b" (the chart's value sets it).
    allowed_buckets: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("allowed_buckets", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_list(value)

    max_concurrent: int = Field(
        0, ge=0, description="Recorder pods at once per operator; more wait queued. 0: no limit"
    )
    # Standby pods (docs/contracts.md section 3): idle recorders that a new WebRecording claims,
    # so `kubectl apply` -> first frame skips the pod's start-up.
    standby_pods: int = Field(
        0, ge=0, le=100, description="Idle standby recorder pods kept ready; 0: off")
    standby_namespace: str | None = Field(
        None, description="Namespace of the standby pods (only WebRecordings there claim one); "
        "default: the first of `namespaces`")
    standby_check_s: float = Field(5.0, gt=0, description="How often the pool is checked")
    standby_owner: str | None = Field(
        None, description="ConfigMap in the standby namespace that owns the idle standby pods, "
        "so deleting it (the chart's, at helm uninstall) garbage-collects them; a claim hands "
        "the pod to its WebRecording. Set and missing: no standby pod is created")

    @model_validator(mode="after")
    def _standby_home(self) -> "OperatorSettings":
        if self.standby_pods and not self.pool_namespace:
            raise ValueError("standby_namespace: required when standby_pods > 0 and the "
                             "operator watches all namespaces")
        return self

    @property
    def pool_namespace(self) -> str | None:
        return self.standby_namespace or (self.namespaces[0] if self.namespaces else None)

    queue_retry_s: float = Field(10.0, gt=0, description="How often a queued task tries again")

    # Supervision.
    poll_interval_s: float = Field(2.0, gt=0, description="GET /status period per active task")
    control_timeout_s: float = Field(10.0, gt=0, description="One HTTP call to a recorder")
    start_deadline_s: float = Field(300.0, gt=0, description="Pod not running by then: lost")
    time_limit_grace_s: float = Field(
        60.0, ge=0, description="Past MaxDurationLimit (recorded time) or max_wall_s: send Stop")
    max_wall_s: float = Field(
        86400.0, gt=0, le=90000, description="Wall-clock cap of a task from its creation "
        "(paused or stuck tasks end here); given to the recorder as WEBRECORD_MAX_WALL_SECONDS")
    finish_deadline_s: float = Field(
        3600.0, gt=0, description="After a forced Stop: delete the pod if still not finished "
        "(room to package and upload a 10-hour recording)"
    )
    delete_wait_s: float = Field(60.0, ge=0, description="Finalizer: wait this long for Stop")
    unreachable_grace_s: float = Field(
        120.0, gt=0, description="Recorder not answering this long: a Warning event (only the "
        "pod's state decides that a recorder is gone)"
    )
    # Replacement of lost recorders (pod failed, deleted, evicted, node gone).
    max_restarts: int = Field(3, ge=0, description="New recorder pods per task; then RecorderLost")
    restart_backoff_s: float = Field(
        2.0, ge=0, description="Wait before the n-th replacement: this * 2^(n-1), at most 60 s"
    )
    stuck_terminating_s: float = Field(
        60.0, ge=0, description="A pod still terminating this long past its grace period (its "
        "node is gone) is force-deleted so the replacement can take its name"
    )

    # Bounded growth: a finished WebRecording is deleted this long after its finishTime unless
    # its spec.ttlSecondsAfterFinished says otherwise (0 there: at once). 0 here: finished
    # WebRecordings without their own TTL are kept until someone deletes them.
    ttl_seconds_after_finished: int = Field(
        604800, ge=0, description="Default lifetime of a finished WebRecording (7 days); "
        "0: keep forever")

    # Operator runtime.
    namespaces: list[str] = Field(default_factory=list, description="Empty: all namespaces")
    peering: str = "webrecord"
    priority: int | None = Field(None, description="kopf peering priority; None: random")
    standalone: bool = False
    max_workers: int = Field(16, ge=1, description="Threads for Kubernetes API calls")
    watch_server_timeout_s: int = Field(300, ge=10)
    liveness_port: int | None = Field(None, description="Serve kopf's /healthz on this port")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Serve Prometheus metrics (GET /metrics) on this port")
