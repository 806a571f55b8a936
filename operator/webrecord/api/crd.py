"""Generates the WebRecording CustomResourceDefinition from the pydantic models.

    python -m webrecord.api.crd > crds/webrecordings.yaml      (or: webrecord crd)

The models are the single source of truth; this module only translates pydantic's JSON Schema
into a Kubernetes *structural* schema: `$ref`s inlined, `anyOf [X, null]` turned into
`nullable: true`, no `additionalProperties: false` (Kubernetes prunes unknown fields instead),
no titles or null defaults. Ranges, lengths, patterns and enums are kept, so the API server
rejects what the protocol rejects. A few rules that pydantic expresses as Python validators are
added here as CEL (`x-kubernetes-validations`).
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from webrecord.api import media, page, snapshots
from webrecord.api.models import LIVE_HLS_NEEDS_HLS, RecordingSpec
from webrecord.api.names import CEL_TARGET_DIR, CEL_TARGET_NAME
from webrecord.api.urls import CEL_URL_CHARS, URL_CHARS_RULE
from webrecord.api.resource import (
    CATEGORIES,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    WebRecordingStatus,
)

REGENERATE = "python -m webrecord.api.crd > crds/webrecordings.yaml && cp crds/webrecordings.yaml charts/webrecord/crds/"

# Keys of pydantic's JSON Schema that a structural schema keeps as they are.
_KEEP = {
    "type", "description", "enum", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "format", "default",
}

# Spec fields a user may change after creation: the controls. Everything else is fixed once the
# recorder started, so the API server refuses the change instead of the operator ignoring it.
_MUTABLE_SPEC = {"action", "actionSeq"}


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One node of pydantic's schema as a structural OpenAPI v3 node."""
    if "$ref" in schema:
        target = defs[schema["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {schema['anyOf']} structurally")
        nullable = len(options) < len(schema["anyOf"])
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        node = structural({**options[0], **rest}, defs)
        if nullable:
            node["nullable"] = True
            node.pop("default", None)  # a null default means "absent"
        return node
    node: dict[str, Any] = {k: copy.deepcopy(v) for k, v in schema.items() if k in _KEEP}
    if "default" in node and node["default"] is None:
        del node["default"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        node["type"] = "object"
        props = schema.get("properties", {})
        node["properties"] = {name: structural(sub, defs) for name, sub in props.items()}
        if schema.get("required"):
            node["required"] = list(schema["required"])
        # An object with a default_factory has no default in pydantic's schema: nothing to do.
    elif kind == "array":
        node["items"] = structural(schema.get("items", {}), defs)
    if "type" not in node:
        raise ValueError(f"schema node without a type: {schema}")
    return node


def _schema_of(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True)
    return structural(raw, raw.get("$defs", {}))


def spec_schema() -> dict[str, Any]:
    schema = _schema_of(RecordingSpec)
    props = schema["properties"]
    props["actionSeq"]["description"] = (
        "Bump to repeat spec.action (two Refreshes: actionSeq 1 then 2); never decreases"
    )
    props["actionSeq"]["x-kubernetes-validations"] = [
        {"rule": "self >= oldSelf", "message": "actionSeq must not decrease"}
    ]
    props["action"]["description"] = (
        "Control of the running task; applied once per (action, actionSeq) change"
    )
    for name, sub in props.items():
        if name not in _MUTABLE_SPEC:
            sub.setdefault("x-kubernetes-validations", []).append(
                {"rule": "self == oldSelf", "message": f"{name} is immutable; only action and actionSeq may change"}
            )
    # Live outputs (extension) may change while recording; the rest of output may not.
    props["output"]["x-kubernetes-validations"] = [{
        "rule": " && ".join(f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || "
                            f"self.{f} == oldSelf.{f})"
                            for f in ("cos", "vod", "video", "snapshots", "liveHls")),
        "message": "output is immutable except output.live; only action, actionSeq and "
                   "output.live may change"},
        *({"rule": rule, "message": message} for rule, message in snapshots.CEL_OUTPUT_RULES),
        {"rule": "!has(self.liveHls) || !self.liveHls || "
                 "(has(self.video) && has(self.video.muxer) && self.video.muxer == 'hls')",
         "message": LIVE_HLS_NEEDS_HLS}]
    props["output"]["properties"]["snapshots"]["x-kubernetes-validations"] = [
        {"rule": rule, "message": message} for rule, message in snapshots.CEL_SNAPSHOT_RULES]
    # The URL rules a regular expression can state; the rest (credentials, ambiguous IPv4
    # forms) the operator checks with the models and ends the task with InvalidParam.
    video_props = props["output"]["properties"]["video"]["properties"]
    for field, node in (("recordUrl", props["recordUrl"]), ("callbackUrl", props["callbackUrl"]),
                        ("authUrl", video_props["authUrl"])):
        node.setdefault("x-kubernetes-validations", []).append(
            {"rule": CEL_URL_CHARS, "message": f"{field} {URL_CHARS_RULE}"})
    cos = props["output"]["properties"]["cos"]["properties"]
    for field, rules in (("targetDir", CEL_TARGET_DIR), ("targetName", CEL_TARGET_NAME)):
        cos[field]["x-kubernetes-validations"] = [
            {"rule": rule, "message": f"{field} {message}"} for rule, message in rules
        ]
    video = props["output"]["properties"]["video"]
    video["properties"]["encryptKey"]["pattern"] = "^([0-9a-fA-F]{32})?$"
    # A key inline in a resource would sit in the spec for anyone who can read it and in
    # kopf's last-handled annotation: a WebRecording names a Secret instead.
    video["properties"]["encryptKey"]["description"] = (
        "Not accepted in a WebRecording: put the key in a Secret and set encryptKeySecretRef")
    video["x-kubernetes-validations"] = [
        {
            "rule": "!has(self.encryptKey) || self.encryptKey == ''",
            "message": "encryptKey is not accepted in a WebRecording: store the key in a "
                       "Secret and set encryptKeySecretRef",
        },
        {
            "rule": "!has(self.encryptKeySecretRef) || self.muxer == 'hls'",
            "message": "encryptKeySecretRef requires muxer 'hls'",
        },
        *({"rule": rule, "message": message} for rule, message in media.CEL_RULES),
    ]
    headers = props["page"]["properties"]["headers"]["items"]
    headers["x-kubernetes-validations"] = [
        {"rule": rule, "message": message} for rule, message in page.CEL_HEADER_RULES]
    return schema


def status_schema() -> dict[str, Any]:
    schema = _schema_of(WebRecordingStatus)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions.pop("default", None)
    return schema


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict (apiextensions.k8s.io/v1)."""
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        # The name is the task id: the recorder, its pod and its token secret are named after
        # it, and the recorder's task id is a DNS label.
        "x-kubernetes-validations": [
            {
                "rule": "self.metadata.name.size() <= 52",
                "message": "metadata.name must be at most 52 characters (it names the recorder pod)",
            },
            {
                "rule": "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                "message": "metadata.name must be a DNS label (lower case letters, digits, '-'): it is the task id",
            },
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "webrecord"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "URL", "type": "string", "jsonPath": ".spec.recordUrl"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        {
                            "name": "Duration",
                            "type": "number",
                            "format": "float",
                            "description": "Recorded seconds",
                            "jsonPath": ".status.recordedSeconds",
                        },
                        {
                            "name": "Error",
                            "type": "string",
                            "priority": 1,
                            "jsonPath": ".status.result.errorCode",
                        },
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated from webrecord.api.models by `python -m webrecord.api.crd`. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


def register(subparsers: Any) -> None:
    """`webrecord crd`: print the CRD YAML."""
    parser = subparsers.add_parser("crd", help="print the WebRecording CRD (YAML)")
    parser.set_defaults(func=_print_crd)


def _print_crd(_args: Any) -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.stdout.write(render())
