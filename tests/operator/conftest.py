"""Fixtures of the operator tests: CRDs on the real API server, the operator as a subprocess,
a loopback callback receiver, and small helpers to act as the kubelet."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last value: {last!r}")


@pytest.fixture(scope="session")
def crds_installed(control_plane: Any) -> Any:
    control_plane.kubectl("apply", "--server-side", "-f", str(CRDS))
    # Polled rather than `kubectl wait`, which errors out while .status.conditions is still unset.
    query = '{.status.conditions[?(@.type=="Established")].status}'
    for name in ("webrecordings.webrecord.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        wait_for(lambda: control_plane.kubectl("get", "crd", name, "-o", f"jsonpath={query}",
                                               check=False).stdout.strip() == "True",
                 60, f"CRD {name} to be established")
    return control_plane


class Kube:
    """kubectl-based helpers bound to one namespace."""

    def __init__(self, control_plane: Any, namespace: str) -> None:
        self.cp = control_plane
        self.ns = namespace

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl("-n", self.ns, *args, **kw)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        return json.loads(result.stdout)

    def status(self, name: str) -> dict[str, Any]:
        return (self.get("webrecording", name) or {}).get("status") or {}

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.kubectl("patch", "webrecording", name, "--type=merge", "-p", json.dumps({"spec": spec}))

    def set_pod_status(self, pod: str, status: dict[str, Any]) -> None:
        """Play the kubelet: write the pod's status through the status subresource."""
        self.kubectl("patch", "pod", pod, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": status}))

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "events", "-o", "json",
                           f"--field-selector=involvedObject.name={name}")
        return json.loads(out.stdout)["items"]

    def wait_phase(self, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(lambda: (s := self.status(name)).get("phase") == phase and s,
                        timeout, f"WebRecording {name} to reach phase {phase}")


def recording(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "webrecord.io/v1alpha1",
        "kind": "WebRecording",
        "metadata": {"name": name},
        "spec": {"recordUrl": "http://127.0.0.1:9/page", **spec},
    }


class OperatorProcess:
    """`python -m webrecord.controller operator` against the test control plane."""

    def __init__(self, env: dict[str, str], args: list[str], log_path: Path) -> None:
        self.env, self.args, self.log_path = env, args, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "OperatorProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webrecord.controller", "operator", *self.args],
            env=self.env, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        return self

    def stop(self, hard: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if hard else signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def kube(crds_installed: Any, k8s_namespace: str) -> Kube:
    return Kube(crds_installed, k8s_namespace)


# Short timeouts so failure paths finish within a test's budget.
FAST = {
    "WEBRECORD_OPERATOR_POLL_INTERVAL_S": "0.5",
    "WEBRECORD_OPERATOR_START_DEADLINE_S": "60",
    "WEBRECORD_OPERATOR_DELETE_WAIT_S": "20",
    "WEBRECORD_CALLBACK_ATTEMPTS": "3",
    "WEBRECORD_CALLBACK_BACKOFF_S": "0.1",
}


@pytest.fixture
def start_operator(
    kube: Kube, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators in the test's namespace (standalone unless told); all stopped after."""
    started: list[OperatorProcess] = []

    def start(args: list[str] | None = None, kubeconfig: Path | None = None,
              **env: str) -> OperatorProcess:
        full = {**kube.cp.env, **FAST, **env, "WEBRECORD_LOG_LEVEL": "INFO"}
        if kubeconfig:
            full["KUBECONFIG"] = str(kubeconfig)
        op = OperatorProcess(full, args or ["--standalone", "--namespace", kube.ns],
                             tmp_path / f"operator-{len(started)}.log")
        started.append(op.start())
        return op

    yield start
    for op in started:
        op.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for op in started:
            sys.stderr.write(f"--- {op.log_path} ---\n{op.log()[-6000:]}\n")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


class CallbackReceiver:
    """A real HTTP server on loopback that records the callback bodies it receives."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.bodies.append(json.loads(raw))
                receiver.headers.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


# --- the kind suite ---------------------------------------------------------------------------

KIND_HINT = ("kind suite (tests/operator/test_kind.py) runs only with WEBRECORD_KIND=1 and "
             "KUBECONFIG pointing to a real cluster (kind) that has the recorder image")


def _kind_enabled() -> bool:
    return os.environ.get("WEBRECORD_KIND") == "1" and bool(os.environ.get("KUBECONFIG"))


def pytest_report_header(config: pytest.Config) -> str | None:
    return None if _kind_enabled() else f"deselected: {KIND_HINT}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a real cluster the `kind` tests are deselected (a skip would count as a failure
    in CI); the header line above names what enables them."""
    if _kind_enabled():
        return
    kind = [item for item in items if item.get_closest_marker("kind")]
    if kind:
        config.hook.pytest_deselected(items=kind)
        items[:] = [item for item in items if not item.get_closest_marker("kind")]
