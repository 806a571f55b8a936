"""Smoke tests of the real control plane: CRDs, the status subresource, watches, RBAC for a
service account, garbage collection by owner references, and a kopf operator logging in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

GROUP, VERSION, PLURAL = "smoke.webrecord.test", "v1", "widgets"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def _wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def widget_crd(control_plane) -> str:
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(CRD))
    control_plane.kubectl(
        "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s", timeout=90
    )
    return CRD["metadata"]["name"]


def _widget(name: str, size: int = 1) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }


def test_crd_status_subresource_and_watch(control_plane, widget_crd, k8s_namespace):
    with control_plane.api_client() as api_client:
        api = client.CustomObjectsApi(api_client)
        start = api.list_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL)
        resource_version = start["metadata"]["resourceVersion"]

        api.create_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL, _widget("w1", 3))
        # Writing status through the main resource is ignored once the status subresource exists.
        api.patch_namespaced_custom_object(
            GROUP, VERSION, k8s_namespace, PLURAL, "w1", {"status": {"phase": "Ignored"}}
        )
        assert "status" not in api.get_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL, "w1")
        patched = api.patch_namespaced_custom_object_status(
            GROUP, VERSION, k8s_namespace, PLURAL, "w1", {"status": {"phase": "Recording"}}
        )
        assert patched["status"] == {"phase": "Recording"}
        assert patched["spec"] == {"size": 3}

        # Watch from before the creation: the server replays what happened since then.
        seen: list[tuple[str, str | None]] = []
        stream = watch.Watch()
        for event in stream.stream(
            api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            k8s_namespace,
            PLURAL,
            resource_version=resource_version,
            timeout_seconds=30,
        ):
            obj = event["object"]
            seen.append((event["type"], obj.get("status", {}).get("phase")))
            if obj.get("status", {}).get("phase") == "Recording":
                stream.stop()
        # The ignored main-resource patch changed nothing, so it produced no event.
        assert seen == [("ADDED", None), ("MODIFIED", "Recording")]


def test_service_account_is_bound_by_rbac(control_plane, k8s_namespace):
    sa_kubeconfig = control_plane.service_account_kubeconfig(k8s_namespace, "probe")
    with control_plane.api_client(sa_kubeconfig) as sa_client:
        core = client.CoreV1Api(sa_client)
        with pytest.raises(ApiException) as denied:
            core.list_namespaced_config_map(k8s_namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{k8s_namespace}:probe" in denied.value.body

        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "configmap-reader", "namespace": k8s_namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "probe-reads-configmaps", "namespace": k8s_namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "probe", "namespace": k8s_namespace}],
        }
        control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))

        def can_list() -> bool:
            try:
                core.list_namespaced_config_map(k8s_namespace)
            except ApiException as exc:
                assert exc.status == 403
                return False
            return True

        # The RBAC authorizer reads through informers: allow a moment for the binding to arrive.
        _wait_until(can_list, 15, "service account may list configmaps after the RoleBinding")

        # No more than granted: not other verbs, resources or namespaces.
        for forbidden in (
            lambda: core.create_namespaced_config_map(
                k8s_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="nope"))
            ),
            lambda: core.list_namespaced_secret(k8s_namespace),
            lambda: core.list_namespaced_config_map("default"),
        ):
            with pytest.raises(ApiException) as exc:
                forbidden()
            assert exc.value.status == 403

    # kubectl with the same kubeconfig agrees.
    can_i = control_plane.kubectl(
        "auth", "can-i", "list", "configmaps", "-n", k8s_namespace, kubeconfig=sa_kubeconfig, check=False
    )
    assert can_i.stdout.strip() == "yes"
    cannot = control_plane.kubectl(
        "auth", "can-i", "list", "secrets", "-n", k8s_namespace, kubeconfig=sa_kubeconfig, check=False
    )
    assert cannot.stdout.strip() == "no"


def test_owner_references_are_garbage_collected(control_plane, k8s_namespace):
    if not control_plane.has_controller_manager:
        pytest.skip("KUBEBUILDER_ASSETS has no kube-controller-manager (provision.sh builds one)")
    with control_plane.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        owner = core.create_namespaced_config_map(
            k8s_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        )
        core.create_namespaced_config_map(
            k8s_namespace,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(
                    name="child",
                    owner_references=[
                        client.V1OwnerReference(
                            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                        )
                    ],
                )
            ),
        )
        core.delete_namespaced_config_map("owner", k8s_namespace)

        def child_gone() -> bool:
            try:
                core.read_namespaced_config_map("child", k8s_namespace)
            except ApiException as exc:
                return exc.status == 404
            return False

        _wait_until(child_gone, 60, "the garbage collector deletes the owned ConfigMap")


def test_namespace_deletion_completes(control_plane):
    if not control_plane.has_controller_manager:
        pytest.skip("KUBEBUILDER_ASSETS has no kube-controller-manager (provision.sh builds one)")
    name = control_plane.create_namespace("doomed")
    control_plane.kubectl("create", "configmap", "x", "-n", name)
    control_plane.delete_namespace(name)
    _wait_until(
        lambda: control_plane.kubectl("get", "namespace", name, check=False).returncode != 0,
        60,
        "the namespace controller empties and removes the namespace",
    )


HANDLERS = textwrap.dedent(
    f"""
    import kopf

    @kopf.on.create("{GROUP}", "{VERSION}", "{PLURAL}")
    def created(spec, patch, **_):
        patch.status["phase"] = "Seen-" + str(spec["size"])
    """
)


# What a namespaced kopf operator for widgets needs, and nothing more: the kubeconfig of a service
# account bound to this proves kopf runs under RBAC with token authentication.
KOPF_RULES = [
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
]
# Cluster-wide reads kopf makes even when it serves one namespace (resource discovery and
# namespace scanning); without them it retries for about a minute before it falls back.
KOPF_CLUSTER_RULES = [
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]


def _kopf_identity(control_plane, namespace: str, identity: str) -> Path:
    if identity == "admin":
        return control_plane.kubeconfig
    kubeconfig = control_plane.service_account_kubeconfig(namespace, "widget-operator")
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "widget-operator", "namespace": namespace},
        "rules": KOPF_RULES,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "widget-operator", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "widget-operator"},
        "subjects": [{"kind": "ServiceAccount", "name": "widget-operator", "namespace": namespace}],
    }
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"widget-operator-{namespace}"},
        "rules": KOPF_CLUSTER_RULES,
    }
    cluster_binding = {
        **binding,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"widget-operator-{namespace}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"widget-operator-{namespace}"},
    }
    control_plane.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump_all([role, binding, cluster_role, cluster_binding])
    )
    _wait_until(
        lambda: control_plane.kubectl(
            "auth", "can-i", "watch", "namespaces", kubeconfig=kubeconfig, check=False
        ).stdout.strip() == "yes",
        15,
        "the operator's ClusterRoleBinding takes effect",
    )
    _wait_until(
        lambda: control_plane.kubectl(
            "auth", "can-i", "patch", f"{PLURAL}.{GROUP}", "--subresource=status", "-n", namespace,
            kubeconfig=kubeconfig, check=False,
        ).stdout.strip() == "yes",
        15,
        "the operator's RoleBinding takes effect",
    )
    return kubeconfig


@pytest.mark.parametrize("identity", ["admin", "service-account"])
def test_kopf_operator_logs_in_with_the_kubeconfig(
    control_plane, widget_crd, k8s_namespace, tmp_path: Path, identity: str
):
    kubeconfig = _kopf_identity(control_plane, k8s_namespace, identity)
    handlers = tmp_path / "handlers.py"
    handlers.write_text(HANDLERS)
    log = (tmp_path / "kopf.log").open("w")
    operator = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", f"--namespace={k8s_namespace}", str(handlers)],
        env={**control_plane.env, "KUBECONFIG": str(kubeconfig)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with control_plane.api_client() as api_client:
            api = client.CustomObjectsApi(api_client)
            api.create_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL, _widget("w2", 5))

            def phase() -> str | None:
                assert operator.poll() is None, (tmp_path / "kopf.log").read_text()[-3000:]
                obj = api.get_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL, "w2")
                return obj.get("status", {}).get("phase")

            assert _wait_until(phase, 60, "kopf's create handler patches the status") == "Seen-5"
        # Nothing was refused on the way: the rules above are all kopf needs.
        assert "Forbidden" not in (tmp_path / "kopf.log").read_text()
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()
        log.close()
