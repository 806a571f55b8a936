"""`webrecord operator` (run the operator) and `webrecord recorder-pod` (the pod's entrypoint)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from webrecord.controller import podrun


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("operator", help="run the Kubernetes operator (kopf)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[],
                       help="watch this namespace (repeatable); default: WEBRECORD_OPERATOR_NAMESPACES")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch all namespaces")
    parser.add_argument("--standalone", action="store_true",
                        help="no peering: act even if other replicas run (tests, one replica)")
    parser.add_argument("--peering", help="kopf peering resource name (default: webrecord)")
    parser.add_argument("--priority", type=int, help="peering priority (default: random)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster or KUBECONFIG)")
    parser.set_defaults(func=_operator)
    podrun.register(subparsers)


def _operator(args: argparse.Namespace) -> int:
    from webrecord.controller.main import run
    from webrecord.controller.settings import OperatorSettings

    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    overrides: dict[str, Any] = {}
    if args.namespace:
        overrides["namespaces"] = args.namespace
    if args.all_namespaces:
        overrides["namespaces"] = []
    if args.standalone:
        overrides["standalone"] = True
    if args.peering:
        overrides["peering"] = args.peering
    if args.priority is not None:
        overrides["priority"] = args.priority
    settings = OperatorSettings(**overrides)
    run(settings)
    return 0
