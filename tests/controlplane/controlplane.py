"""A throwaway Kubernetes control plane: etcd + kube-apiserver (+ kube-controller-manager when its
binary is there) on free loopback ports, RBAC on, admin and service-account kubeconfigs.

Every process runs in its own process group; `stop()` ends each group (SIGTERM, then SIGKILL).
Started from the main thread, each also gets SIGKILL when the test process dies
(PR_SET_PDEATHSIG), so nothing outlives even a killed pytest.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from webrecord.recorder.procs import with_parent_death

from . import certs

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Controllers that make namespaces, owner references and service accounts behave as in a
# cluster; nothing that needs nodes.
CONTROLLERS = "garbagecollector,namespace,serviceaccount"
_START_ATTEMPTS = 3


class ControlPlaneError(RuntimeError):
    pass


class KubectlError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


class _Process:
    """One child process in its own process group, logging to a file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        # PDEATHSIG follows the forking *thread*: only tie the child to the main thread, never to
        # a worker thread that may end while the control plane is still in use.
        on_main_thread = threading.current_thread() is threading.main_thread()
        self.popen = subprocess.Popen(
            with_parent_death(argv) if on_main_thread else list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the whole group, SIGKILL after `grace` seconds, and reap."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # The leader is gone; anything it forked into the group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


class ControlPlane:
    """Start with `start()` or `with ControlPlane(assets) as cp:`; `stop()` is idempotent."""

    def __init__(
        self,
        assets_dir: Path,
        *,
        controller_manager: bool | None = None,
        extra_apiserver_args: Sequence[str] = (),
        ready_timeout: float = 120.0,
        workdir: Path | None = None,
    ) -> None:
        self.assets_dir = Path(assets_dir)
        kcm = self.assets_dir / "kube-controller-manager"
        # Envtest asset directories have no controller manager: then run without one.
        self.has_controller_manager = (
            os.access(kcm, os.X_OK) if controller_manager is None else controller_manager
        )
        self._extra_apiserver_args = list(extra_apiserver_args)
        self._ready_timeout = ready_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="webrecord-cp-"))
        self.log_dir = self.workdir / "logs"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.server = ""
        self.etcd_url = ""
        self._processes: list[_Process] = []
        self._pki: certs.Pki | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ca_file(self) -> Path:
        assert self._pki is not None, "control plane not started"
        return self._pki.ca_cert

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG, for subprocesses such as the operator under test."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def start(self) -> ControlPlane:
        # A free port can be taken between our probe and the server's bind (other test sessions
        # run beside us): start again on fresh ports then, a few times at most.
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._start()
                return self
            except ControlPlaneError as exc:
                if "address already in use" not in str(exc) or attempt == _START_ATTEMPTS:
                    self.stop()
                    raise
                self._stop_processes()
                shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._pki = pki = certs.generate(self.workdir / "pki", service_ip="10.0.0.1")
        etcd_port, etcd_peer_port, api_port = free_port(), free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.server = f"https://127.0.0.1:{api_port}"

        etcd = self._spawn(
            "etcd",
            [
                str(self.assets_dir / "etcd"),
                "--name=webrecord-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-cluster=webrecord-test=http://127.0.0.1:{etcd_peer_port}",
                # A test database is thrown away: skip fsync, it is the slow part of etcd.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait(etcd, "etcd /health", lambda: b'"health":"true"' in self._get(f"{self.etcd_url}/health"))

        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.assets_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_public_key}",
                f"--service-account-signing-key-file={pki.sa_private_key}",
                "--allow-privileged=true",
                # No kubelets: nothing to reconcile the `kubernetes` Service endpoints against.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
                *self._extra_apiserver_args,
            ],
        )
        self._write_kubeconfig(
            self.kubeconfig,
            user={"client-certificate-data": _b64(pki.admin_cert), "client-key-data": _b64(pki.admin_key)},
        )
        self._wait(apiserver, "kube-apiserver /readyz", lambda: self._get(f"{self.server}/readyz") == b"ok")

        if self.has_controller_manager:
            kcm = self._spawn(
                "kube-controller-manager",
                [
                    str(self.assets_dir / "kube-controller-manager"),
                    f"--kubeconfig={self.kubeconfig}",
                    f"--controllers={CONTROLLERS}",
                    "--leader-elect=false",
                    # No serving endpoint: nothing scrapes it, and it saves a port.
                    "--secure-port=0",
                    "--use-service-account-credentials=false",
                    f"--root-ca-file={pki.ca_cert}",
                    "--v=1",
                ],
            )
            # The serviceaccount controller filling in `default/default` proves the controllers run.
            self._wait(kcm, "kube-controller-manager (default service account)", self._has_default_sa)

    def stop(self) -> None:
        self._stop_processes()
        if self._own_workdir and not os.environ.get("WEBRECORD_KEEP_CONTROLPLANE"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- helpers for tests -----------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,  # noqa: A002 - mirrors subprocess.run
        check: bool = True,
        timeout: float = 60.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs the provisioned kubectl against this control plane (admin unless `kubeconfig`)."""
        argv = [str(self.assets_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A kubernetes.client.ApiClient for this control plane; close it when done."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def create_namespace(self, prefix: str = "test") -> str:
        """A new namespace with a unique name, with its `default` service account in place (pods
        are admitted at once, without waiting for the serviceaccount controller)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.kubectl("create", "-f", "-", input=yaml.safe_dump(manifest))
        sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}}
        result = self.kubectl("create", "-f", "-", input=yaml.safe_dump(sa), check=False)
        if result.returncode != 0 and "AlreadyExists" not in result.stderr:
            raise KubectlError(f"creating default service account in {name}: {result.stderr.strip()}")
        return name

    def delete_namespace(self, name: str) -> None:
        # Without waiting: names are unique, and finalization needs the controller manager.
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")

    @contextlib.contextmanager
    def namespace(self, prefix: str = "test") -> Iterator[str]:
        """`with control_plane.namespace() as ns:` — created on entry, deleted on exit."""
        name = self.create_namespace(prefix)
        try:
            yield name
        finally:
            self.delete_namespace(name)

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, expiration_seconds: int = 3600
    ) -> Path:
        """Creates the service account if needed, gets a token through the TokenRequest API and
        writes a kubeconfig that authenticates with it (so RBAC applies as to a pod)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        with self.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            try:
                core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
            token_request = core.create_namespaced_service_account_token(
                name,
                namespace,
                client.AuthenticationV1TokenRequest(
                    spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
                ),
            )
        path = self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        self._write_kubeconfig(path, user={"token": token_request.status.token}, namespace=namespace)
        return path

    # ---- internals -------------------------------------------------------------------------

    def _stop_processes(self) -> None:
        # Reverse order: clients before the servers they talk to.
        while self._processes:
            self._processes.pop().stop()

    def _spawn(self, name: str, argv: Sequence[str]) -> _Process:
        process = _Process(name, argv, self.log_dir / f"{name}.log")
        self._processes.append(process)
        return process

    def _ssl_context(self) -> ssl.SSLContext:
        assert self._pki is not None
        context = ssl.create_default_context(cafile=str(self._pki.ca_cert))
        context.load_cert_chain(str(self._pki.admin_cert), str(self._pki.admin_key))
        return context

    def _get(self, url: str) -> bytes:
        context = self._ssl_context() if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
                return response.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
            return b""

    def _has_default_sa(self) -> bool:
        return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0

    def _wait(self, process: _Process, what: str, ready: Any) -> None:
        deadline = time.monotonic() + self._ready_timeout
        while True:
            if not process.alive():
                raise ControlPlaneError(
                    f"{process.name} exited with code {process.popen.returncode} before {what} "
                    f"answered; last lines of its log:\n{_tail(process.log_path)}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{what} did not answer within {self._ready_timeout:.0f} s; last lines of the "
                    f"{process.name} log:\n{_tail(process.log_path)}"
                )
            time.sleep(0.25)

    def _write_kubeconfig(self, path: Path, *, user: dict[str, str], namespace: str = "default") -> None:
        assert self._pki is not None
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "webrecord-test",
                    "cluster": {"server": self.server, "certificate-authority-data": _b64(self._pki.ca_cert)},
                }
            ],
            "users": [{"name": "webrecord-test-user", "user": user}],
            "contexts": [
                {
                    "name": "webrecord-test",
                    "context": {"cluster": "webrecord-test", "user": "webrecord-test-user", "namespace": namespace},
                }
            ],
            "current-context": "webrecord-test",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
