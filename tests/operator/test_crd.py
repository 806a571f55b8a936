"""The CRD is generated from the models and committed; these tests keep the two in step."""

from __future__ import annotations

from pathlib import Path

import yaml

from webrecord.api import crd
from webrecord.api.models import MAX_DIMENSION, MAX_DURATION_LIMIT_S

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / "webrecordings.yaml"
CHART_COPY = ROOT / "charts" / "webrecord" / "crds" / "webrecordings.yaml"


def test_committed_crd_is_up_to_date() -> None:
    assert COMMITTED.read_text() == crd.render(), (
        f"crds/webrecordings.yaml is out of date with the models; regenerate with: {crd.REGENERATE}"
    )


def test_chart_carries_the_same_crd() -> None:
    assert CHART_COPY.read_text() == COMMITTED.read_text(), (
        f"charts/webrecord/crds/webrecordings.yaml differs from crds/; run: {crd.REGENERATE}"
    )


def _walk(node: object, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_schema_is_structural_and_keeps_the_protocol_ranges() -> None:
    doc = yaml.safe_load(COMMITTED.read_text())
    version = doc["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        assert "title" not in node, path
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        if "properties" in node:
            assert node.get("type") == "object", path
            assert "additionalProperties" not in node, path
    spec = schema["properties"]["spec"]["properties"]
    assert spec["width"]["minimum"] == 0 and spec["width"]["maximum"] == MAX_DIMENSION
    assert spec["height"]["maximum"] == MAX_DIMENSION
    assert spec["maxDurationLimit"]["maximum"] == MAX_DURATION_LIMIT_S
    assert spec["recordUrl"]["pattern"] == "^https?://"
    assert spec["storageType"]["enum"] == ["cos", "cfs"]
    assert spec["action"]["enum"] == ["Pause", "Resume", "Refresh", "Stop", "Cancel"]
    assert spec["action"]["nullable"] is True
    assert spec["output"]["properties"]["video"]["properties"]["muxer"]["enum"] == ["mp4", "hls"]
    assert schema["properties"]["spec"]["required"] == ["recordUrl"]
    status = schema["properties"]["status"]["properties"]
    for field in ("phase", "createTime", "finishTime", "result", "conditions",
                  "observedGeneration", "observedActionSeq", "podName", "message"):
        assert field in status, field
    assert status["result"]["properties"]["videos"]["items"]["required"] == [
        "filename", "fileSize", "fileDuration"
    ]


def test_names_subresource_and_printer_columns() -> None:
    doc = yaml.safe_load(COMMITTED.read_text())
    assert doc["metadata"]["name"] == "webrecordings.webrecord.io"
    assert doc["spec"]["scope"] == "Namespaced"
    assert doc["spec"]["names"]["shortNames"] == ["wrec"]
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["storage"] and version["served"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Status"] == ".status.phase"
    assert columns["URL"] == ".spec.recordUrl"
    assert columns["Age"] == ".metadata.creationTimestamp"
    assert columns["Duration"] == ".status.recordedSeconds"


def test_structural_translation_rules() -> None:
    defs = {"Thing": {"type": "object", "title": "Thing", "additionalProperties": False,
                      "properties": {"n": {"type": "integer", "minimum": 1, "title": "N"}}}}
    node = crd.structural({"anyOf": [{"$ref": "#/$defs/Thing"}, {"type": "null"}],
                           "default": None, "description": "d"}, defs)
    assert node == {"type": "object", "nullable": True, "description": "d",
                    "properties": {"n": {"type": "integer", "minimum": 1}}}
