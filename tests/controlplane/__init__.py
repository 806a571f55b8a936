"""A real Kubernetes control plane (etcd + kube-apiserver, envtest style) for the cluster tests.

`provision.sh` provides the binaries, `controlplane.ControlPlane` runs them, `plugin` holds the
pytest fixtures (registered from tests/conftest.py).
"""
