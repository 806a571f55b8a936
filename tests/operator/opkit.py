"""Helpers of the operator tests (imported by conftest.py and the tests): waiting, kubectl
bound to a namespace, the operator as a subprocess, a loopback callback receiver."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

    def set_pod_status(self, pod: str, status: dict[str, Any], missing_ok: bool = False) -> bool:
        """Play the kubelet: write the pod's status through the status subresource. With
        `missing_ok`, a pod already deleted (garbage collected) is fine; returns False then."""
        result = self.kubectl("patch", "pod", pod, "--subresource=status", "--type=merge",
                              "-p", json.dumps({"status": status}), check=not missing_ok)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return False
            raise AssertionError(result.stderr)
        return True

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


class CallbackReceiver:
    """A real HTTP server (loopback unless told `host`) that records the callbacks it receives:
    parsed bodies, raw bodies (to check signatures) and headers."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.raw.append(raw)
                receiver.bodies.append(json.loads(raw))
                receiver.headers.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
