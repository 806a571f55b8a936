"""The one-node cluster from Python, without pytest (the plugin and bench/operator/node.py use it).

    with NodeCluster.from_environment() as cluster:
        cluster.kubectl("get", "nodes")

`KUBECONFIG` set: the user's cluster (kind, k3d, cloud), never started or stopped; its recorder
image is named by `WEBRECORD_KIND_IMAGE`. Otherwise this machine's own cluster (cluster.sh up,
and down again on exit unless someone else still uses it: cluster.sh counts its owners).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from controlplane.assets import find_assets
from controlplane.controlplane import KubectlError

HERE = Path(__file__).parent
CLUSTER_SH = HERE / "cluster.sh"
PROVISION_SH = HERE / "provision.sh"
HELM_SH = HERE.parent / "operator" / "helm.sh"
RECORDER_IMAGE = "webrecord/recorder:0.1.0"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"
# Start-up includes importing changed image tarballs (the recorder's: about a minute).
UP_TIMEOUT = float(os.environ.get("WEBRECORD_NODE_UP_TIMEOUT", "900"))
DOWN_TIMEOUT = 300.0
# A cold provision builds kubelet, kube-proxy, kube-scheduler, CoreDNS (and the control plane and
# helm when missing) from Go modules: tens of minutes on 2 cores.
PROVISION_TIMEOUT = 3600.0
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}

__all__ = ["KubectlError", "NodeCluster", "NodeClusterError", "provision", "start", "stop"]


class NodeClusterError(RuntimeError):
    pass


@dataclass
class NodeCluster:
    """A cluster whose node runs pods: this machine's own (`own_cluster`), or the user's."""

    kubeconfig: Path
    node_ip: str
    image: str
    own_cluster: bool
    bin_dirs: list[Path]
    node_images: set[str] = field(default_factory=set)

    @classmethod
    @contextlib.contextmanager
    def from_environment(cls) -> Iterator[NodeCluster]:
        """The user's cluster if KUBECONFIG is set, else the own one, started and stopped here."""
        bin_dirs = provision()
        cluster = start(bin_dirs)
        try:
            yield cluster
        except BaseException:
            if cluster.own_cluster:  # the body's error is the one to see, not a failing `down`
                try:
                    stop()
                except NodeClusterError as exc:
                    sys.stderr.write(f"(and stopping the cluster failed too: {exc})\n")
            raise
        if cluster.own_cluster:
            stop()

    @property
    def env(self) -> dict[str, str]:
        """os.environ + KUBECONFIG + PATH with the cluster's kubectl and helm first."""
        path = os.pathsep.join([*map(str, self.bin_dirs), os.environ.get("PATH", "")])
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    @property
    def kubectl_path(self) -> str:
        for directory in self.bin_dirs:
            if os.access(directory / "kubectl", os.X_OK):
                return str(directory / "kubectl")
        return "kubectl"

    @property
    def pause_image(self) -> str:
        return PAUSE_IMAGE

    @property
    def busybox_image(self) -> str | None:
        """The own node's busybox image (sh, httpd, wget, nslookup); None on a user's cluster."""
        names = sorted(name for name in self.node_images if name.startswith("webrecord.local/busybox:"))
        return names[0] if names else None

    def kubectl(
        self,
        *args: str,
        input: str | None = None,  # noqa: A002 - mirrors subprocess.run
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """kubectl against this cluster; raises KubectlError (with stderr) when `check` and it fails."""
        argv = [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def has_image(self, reference: str) -> bool:
        """Whether the node holds the image, as the kubelet reports it in the node's status."""
        self.node_images = _node_images(self)
        wanted = {reference, f"docker.io/{reference}", f"docker.io/library/{reference}"}
        return bool(wanted & self.node_images)

    def create_namespace(self, prefix: str = "test", *, restricted: bool = True) -> str:
        """A new namespace, the `restricted` Pod Security level enforced unless told otherwise;
        its `default` service account is made at once so pods are admitted without waiting."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "-f", "-", input=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": name, "labels": RESTRICTED if restricted else {}}}))
        # The controller manager makes it too, at any moment: whoever comes second is told
        # AlreadyExists (even `kubectl apply` races: it GETs, then CREATEs).
        made = self.kubectl("create", "serviceaccount", "default", "-n", name, check=False)
        if made.returncode != 0 and "already exists" not in made.stderr.lower():
            raise NodeClusterError(f"creating the default service account in {name}: {made.stderr}")
        return name

    def delete_namespace(self, name: str) -> None:
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")

    @contextlib.contextmanager
    def namespace(self, prefix: str = "test", *, restricted: bool = True) -> Iterator[str]:
        """`with cluster.namespace() as ns:` created (restricted) on entry, deleted on exit."""
        name = self.create_namespace(prefix, restricted=restricted)
        try:
            yield name
        finally:
            self.delete_namespace(name)


def _node_images(cluster: NodeCluster) -> set[str]:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {name for node in nodes for image in node["status"].get("images") or [] for name in image.get("names") or []}


def _node_ip(cluster: NodeCluster) -> str:
    query = '{.items[0].status.addresses[?(@.type=="InternalIP")].address}'
    addresses = cluster.kubectl("get", "nodes", "-o", f"jsonpath={query}").stdout.split()
    if not addresses:
        raise NodeClusterError("the cluster's first node reports no InternalIP address")
    return addresses[0]


def _user_kubeconfig() -> str | None:
    return os.environ.get("KUBECONFIG") or None


def _run_script(script: Path, timeout: float) -> str:
    """A provisioning script (its progress on our stderr); returns its last stdout line."""
    result = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise NodeClusterError(f"{script} exited {result.returncode}; its messages are above")
    return result.stdout.strip().splitlines()[-1]


def _cluster_sh(command: str, timeout: float) -> str:
    """cluster.sh COMMAND, this process as the owner its watchdog follows; output as text."""
    argv = ["timeout", "--kill-after=10", str(int(timeout)), "bash", str(CLUSTER_SH), command]
    if command in ("up", "down"):
        argv += ["--owner-pid", str(os.getpid())]
    # Its own session: a Ctrl-C meant for pytest must not cut cluster.sh off halfway.
    result = subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, start_new_session=True
    )
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise NodeClusterError(f"tests/node/cluster.sh {command} exited {result.returncode}:\n{tail}")
    return result.stdout


def provision() -> list[Path]:
    """Directories with kubectl and helm (first on `NodeCluster.env`'s PATH); for the own
    cluster, provision.sh also builds the node's binaries and base images (once)."""
    if _user_kubeconfig():
        return [Path(_run_script(HELM_SH, PROVISION_TIMEOUT)).parent, find_assets()]
    return [Path(_run_script(PROVISION_SH, PROVISION_TIMEOUT))]


def start(bin_dirs: list[Path]) -> NodeCluster:
    """The user's cluster as it is, or the own one started (idempotent) with this process as an owner."""
    user = _user_kubeconfig()
    if user:
        kubeconfig, image = Path(user), os.environ.get("WEBRECORD_KIND_IMAGE", RECORDER_IMAGE)
    else:
        try:
            sys.stderr.write(_cluster_sh("up", UP_TIMEOUT))
        except BaseException as up_error:
            # up's own error is the one to report; a failing down only adds to it.
            try:
                stop()
            except Exception as down_error:  # noqa: BLE001
                raise NodeClusterError(f"{up_error}\n(then, cleaning up: {down_error})") from up_error
            raise
        kubeconfig, image = Path(_cluster_sh("kubeconfig", 30).strip()), RECORDER_IMAGE
    cluster = NodeCluster(kubeconfig, "", image, not user, bin_dirs)
    cluster.node_ip = _node_ip(cluster)
    cluster.node_images = _node_images(cluster)
    return cluster


def stop() -> None:
    """Drops this process as an owner of the own cluster; cluster.sh stops it when none is left."""
    sys.stderr.write(_cluster_sh("down", DOWN_TIMEOUT))
