"""Adapter settings: environment variables with the WEBRECORD_ADAPTER_ prefix, CLI flags override."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from webrecord.api import cost
from webrecord.envlist import split_list


class AdapterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEBRECORD_ADAPTER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    backend: Literal["local", "kubernetes"] = "local"

    # Authentication (API gateway application keys). Keys come from a YAML/JSON file
    # ({key: secret} or [{key, secret}]) and/or a mounted secret directory (file name = key,
    # content = secret). `auth_enabled=False` is for local use only and is logged loudly.
    auth_enabled: bool = True
    auth_keys_file: Path | None = None
    auth_keys_dir: Path | None = None
    auth_max_skew_seconds: int = Field(900, ge=1, description="X-Date tolerance (15 minutes)")
    # The gateway scheme signs the body only through Content-MD5; require it so a signature
    # cannot be reused with another body.
    auth_require_content_md5: bool = True
    auth_replay_cache_size: int = Field(200_000, ge=1000)

    # Request limits: bodies above this are refused (413); a client that has not sent its
    # headers / body within the timeouts is cut off.
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # Prometheus metrics (GET /metrics) on a port of their own, never the callers' port;
    # None: not served. SIGTERM: stop accepting, let requests in flight finish this long.
    metrics_port: int | None = Field(None, ge=0, le=65535)
    drain_seconds: float = Field(20.0, ge=0)
    header_timeout_seconds: float = Field(15.0, gt=0)
    body_timeout_seconds: float = Field(10.0, gt=0)

    # URL policy for RecordURL / CallbackURL. Link-local and cloud metadata addresses are always
    # refused unless listed in `url_allow` (host names or CIDRs). Loopback is refused unless
    # `url_allow_loopback` (None = allowed for the local backend only, where the recorder runs
    # on the caller's own machine; refused for kubernetes, where it would hit the pod itself).
    url_allow: list[str] = Field(default_factory=list)
    url_allow_loopback: bool | None = None
    url_deny_private: bool = False
    url_resolve_timeout_seconds: float = Field(2.0, gt=0)

    # Buckets a Start may name in Output.Cos.Bucket, for keys whose entry in the keys file
    # lists no `buckets` of its own (and for --no-auth). Empty: any bucket.
    allowed_buckets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per-key lists for keys that come from a directory (a mounted Secret holds only secrets):
    # a YAML/JSON file `{ApiAppKey: [bucket, ...]}` (e.g. a mounted ConfigMap).
    key_buckets_file: Path | None = None

    @field_validator("allowed_buckets", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_list(value)

    # Local backend.
    state_dir: Path = Path("./webrecord-state")
    # Admission by measured cost (webrecord.api.cost, coefficients WEBRECORD_COST_*): a queued
    # task starts only while the running recordings plus it fit the CPU and memory budget;
    # max_concurrent is a hard cap.
    max_concurrent: int = Field(8, ge=1, description="At most this many recorders at once")
    capacity_cpu_cores: float | None = Field(
        None, gt=0, description="CPU cores recordings may use together; default: the machine's "
        "(affinity, cgroup quota) times capacity_cpu_fraction")
    capacity_cpu_fraction: float = Field(0.9, gt=0, le=1)
    capacity_memory_mib: float | None = Field(
        None, gt=0, description="Memory recordings may use together; default: the machine's "
        "(cgroup limit) times capacity_memory_fraction")
    capacity_memory_fraction: float = Field(0.8, gt=0, le=1)
    max_queued: int = Field(
        1000, ge=0, description="Starts beyond this many waiting tasks are refused (LimitExceeded)"
    )
    recorder_command: list[str] = Field(
        default_factory=list,
        description="Command that runs the recorder; default: this Python's `-m webrecord.cli recorder`",
    )
    # Warm pool: this many `webrecord recorder --standby` slots kept ready (display, sound,
    # Chromium on a blank page) so a Start claims one instead of starting them; 0 = off. Each
    # idle slot costs ~0.02 CPU cores and ~460-630 MiB (bench/adapter), counted in the budget.
    warm_slots: int = Field(1, ge=0, le=16, description="Warm recorder slots kept ready; 0 = off")
    warm_slot_width: int = Field(1280, ge=1, le=2560, description="Page width the slots prepare")
    warm_slot_height: int = Field(720, ge=1, le=2560, description="Page height the slots prepare")
    status_poll_seconds: float = Field(0.5, gt=0)
    stop_recorders_on_exit: bool = False
    # A recorder process that dies before finishing is started again in the same work dir and
    # resumes from its segments; after this many restarts the task ends with RecorderLost.
    max_restarts: int = Field(3, ge=0, description="Recorder restarts per task")
    restart_backoff_seconds: float = Field(
        1.0, ge=0, description="Wait before the n-th restart: this * 2^(n-1), at most 60 s")
    # Bounded growth: a finished task's directory (tasks/<id>: task file, status, log, work
    # dir with its segments) and its row go this long after its finishTime; Describe then
    # answers "no task". Finished videos under output/ are never touched. 0: keep forever.
    retention_seconds: int = Field(
        604800, ge=0, description="Finished tasks are pruned this long after finishing (7 days); "
        "0: never")
    retention_check_seconds: float = Field(
        3600.0, gt=0, description="How often finished tasks are pruned (and once at startup)")

    # Kubernetes backend.
    # Recorder pods mount a filesystem output (WEBRECORD_OUTPUT_DIR): Starts without Output.Cos
    # or Output.Vod are accepted. Otherwise they are refused (the video would die with the pod).
    cluster_filesystem_output: bool = False
    namespace: str = "default"
    kubeconfig: Path | None = None

    def budget(self) -> cost.Budget:
        return cost.Budget(
            self.capacity_cpu_cores or cost.machine_cpu_cores() * self.capacity_cpu_fraction,
            self.capacity_memory_mib or cost.machine_memory_mib() * self.capacity_memory_fraction)

    def loopback_allowed(self) -> bool:
        if self.url_allow_loopback is not None:
            return self.url_allow_loopback
        return self.backend == "local"
