"""Health of a real `webrecord serve` process: /healthz (liveness) and /readyz (readiness; not
ready while the backend does not answer), and the drain on SIGTERM: the listening socket closes
at once, a request already in flight still gets its reply, then the process exits."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from .conftest import Client
from .helpers import ServeProcess, sample, scrape, wait_for


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


class FakeControl:
    """A loopback stand-in for a recorder's control endpoint: answers every POST /control
    with the task paused."""

    def __init__(self, task_id: str) -> None:
        status = json.dumps({"taskId": task_id, "status": "paused", "lastActionSeq": 1}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(status)))
                self.end_headers()
                self.wfile.write(status)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.timeout(90)
def test_sigterm_drains_the_request_in_flight(tmp_path: Path) -> None:
    """The request in flight is a Pause waiting for its recorder's control port (a recorder
    that has not opened it yet; the local backend waits for it): it is answered after SIGTERM,
    once the test opens that port."""
    state = tmp_path / "state"
    idle_recorder = json.dumps([sys.executable, "-c", "import time; time.sleep(120)"])
    with ServeProcess(tmp_path, "--no-auth", "--metrics-port", "0", "--state-dir", str(state),
                      env={"WEBRECORD_ADAPTER_DRAIN_SECONDS": "30",
                           "WEBRECORD_ADAPTER_RECORDER_COMMAND": idle_recorder,
                           "WEBRECORD_ADAPTER_STOP_RECORDERS_ON_EXIT": "true"}) as served:
        client = Client("127.0.0.1", served.port)
        metrics = f"http://127.0.0.1:{served.metrics_port}/metrics"
        assert client.request("GET", "/readyz").status == 200
        task_id = client.call("Start", {"RecordURL": "http://127.0.0.1:9/"}).body["TaskID"]
        body = json.dumps({"Action": "Pause", "Data": {"TaskID": task_id}}).encode()
        slow = socket.create_connection(("127.0.0.1", served.port), timeout=30)
        control = FakeControl(task_id)
        try:
            slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            wait_for(lambda: {"m": scrape(metrics)},
                     lambda s: sample(s["m"], "webrecord_adapter_requests_in_flight") == 1, 20,
                     "the Pause to be in flight")
            served.proc.send_signal(signal.SIGTERM)
            # New connections are refused while the request in flight still waits.
            wait_for(lambda: {"refused": _refused(served.port)}, lambda s: s["refused"], 20,
                     "the API port to stop accepting")
            assert served.proc.poll() is None, "exited before the request in flight finished"
            (state / "tasks" / task_id / "port").write_text(str(control.port))
            reply = slow.makefile("rb").read()  # until the server closes the connection
        finally:
            slow.close()
            control.close()
        head, _, payload = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), reply[:600]
        answer = json.loads(payload)
        assert answer["TaskID"] == task_id and answer["RequestID"], answer
        assert served.proc.wait(30) == 0
        log = served.log_text()
        assert "adapter draining" in log and "adapter stopped" in log, log[-3000:]


@pytest.mark.timeout(60)
def test_not_ready_while_the_kubernetes_api_is_unreachable(tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Config
        clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{closed.getsockname()[1]}"}}}}]
        users: [{{name: u, user: {{token: t}}}}]
        contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
        current-context: x
        """))
    try:
        with ServeProcess(tmp_path, "--no-auth", "--backend", "kubernetes",
                          env={"WEBRECORD_ADAPTER_KUBECONFIG": str(kubeconfig)}) as served:
            client = Client("127.0.0.1", served.port)
            ready = client.request("GET", "/readyz")
            assert ready.status == 503, ready.body
            assert ready.body["ErrorCode"] == "BackendUnavailable"
            assert ready.body["ErrorMessage"].startswith("the Kubernetes API is unreachable")
            alive = client.request("GET", "/healthz")
            assert alive.status == 200 and alive.body["ready"] is False, alive.body
    finally:
        closed.close()
