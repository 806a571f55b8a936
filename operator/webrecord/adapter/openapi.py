"""The OpenAPI 3.1 description of the Action protocol, generated from the protocol models."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from webrecord import __version__
from webrecord.api.protocol import actions as pm
from webrecord.api.protocol.errors import AdapterErrorCode
from webrecord.api.models import ErrorCode as ResultErrorCode
from webrecord.api.models import LiveState, Phase

_REF = "#/components/schemas/{model}"


def _envelope(action: str, data_ref: str | None, required_data: bool = True) -> dict[str, Any]:
    props: dict[str, Any] = {"Action": {"const": action}}
    if data_ref:
        props["Data"] = {"$ref": _REF.format(model=data_ref)}
    return {
        "type": "object",
        "properties": props,
        "required": ["Action", "Data"] if required_data else ["Action"],
        "additionalProperties": False,
    }


def openapi_document() -> dict[str, Any]:
    models = [pm.StartData, pm.TaskData, pm.LiveUpdateData, pm.ListData]
    _, defs = models_json_schema(
        [(model, "validation") for model in models], ref_template=_REF
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    for action in pm.ActionName:
        model = pm.DATA_MODELS[action]
        schemas[f"{action.value}Request"] = _envelope(
            action.value, model.__name__, required_data=action is not pm.ActionName.LIST
        )
    request_id = {"type": "string", "description": "Fresh for every reply (a UUID)"}
    video = {
        "type": "object",
        "properties": {
            "Filename": {"type": "string"},
            "FileSize": {"type": "integer"},
            "FileDuration": {"type": "number", "description": "Seconds"},
            "FileId": {"type": "string"},
            "FileURL": {"type": "string"},
        },
        "required": ["Filename", "FileSize", "FileDuration"],
    }
    snapshot = {
        "type": "object",
        "description": "Extension: one JPEG delivered beside the video (Output.Snapshots)",
        "properties": {
            "Filename": {"type": "string", "description": "The video's name + _snapshot_NNNNN.jpg "
                         "or _poster.jpg"},
            "Time": {"type": "number", "description": "Seconds into the video"},
            "FileSize": {"type": "integer"},
            "FileURL": {"type": "string"},
        },
        "required": ["Filename", "Time", "FileSize"],
    }
    time_field = {"type": "integer", "description": "Unix seconds; present only once it happened"}
    schemas.update(
        {
            "TaskReply": {
                "type": "object",
                "properties": {"TaskID": {"type": "string"}, "RequestID": request_id},
                "required": ["TaskID", "RequestID"],
            },
            "Video": video,
            "Snapshot": snapshot,
            "Result": {
                "type": "object",
                "properties": {
                    "ErrorCode": {
                        "type": "string",
                        "enum": [""] + [c.value for c in ResultErrorCode],
                        "description": "Empty when the task succeeded",
                    },
                    "ErrorMessage": {"type": "string"},
                    "Videos": {"type": "array", "items": {"$ref": _REF.format(model="Video")}},
                    "Snapshots": {"type": "array", "description": (
                        "Extension: the periodic snapshots in video order; present only when "
                        "the task asked for Output.Snapshots"),
                        "items": {"$ref": _REF.format(model="Snapshot")}},
                    "Poster": {"$ref": _REF.format(model="Snapshot"), "description": (
                        "Extension: the video's last frame; present only when taken")},
                },
                "required": ["ErrorCode", "ErrorMessage", "Videos"],
            },
            "LiveOutput": {
                "type": "object",
                "properties": {
                    "Url": {"type": "string", "description": "The URL, its stream key as ***"},
                    "State": {"type": "string", "enum": [s.value for s in LiveState],
                              "description": "paused: connected, nothing sent (the receiver's "
                              "player holds the last frame); retrying: reconnecting with backoff"},
                    "Message": {"type": "string", "description": "Why it is retrying or refused"},
                    "Reconnects": {"type": "integer", "minimum": 0},
                    "SentBytes": {"type": "integer", "minimum": 0},
                    "DroppedBytes": {"type": "integer", "minimum": 0, "description": (
                        "Dropped for this receiver because it was slower than the recording")},
                },
                "required": ["Url", "State", "Message", "Reconnects", "SentBytes", "DroppedBytes"],
            },
            "LiveHls": {
                "type": "object",
                "properties": {
                    "Url": {"type": "string", "description": (
                        "The live playlist (EVENT type): grows while recording, ends with "
                        "#EXT-X-ENDLIST after Stop")},
                    "Segments": {"type": "integer", "minimum": 0,
                                 "description": "Segments listed in it so far"},
                    "Pending": {"type": "integer", "minimum": 0,
                                "description": "Closed segments not uploaded yet"},
                    "Ended": {"type": "boolean", "description": "#EXT-X-ENDLIST written"},
                    "Message": {"type": "string", "description": "Why uploads are behind"},
                },
                "required": ["Url", "Segments", "Pending", "Ended", "Message"],
            },
            "Task": {
                "type": "object",
                "properties": {
                    "TaskID": {"type": "string"},
                    "Status": {"type": "string", "enum": [p.value for p in Phase]},
                    "CreateTime": time_field,
                    "StartTime": time_field,
                    "CancelTime": time_field,
                    "StopTime": time_field,
                    "FinishTime": time_field,
                    "Result": {"$ref": _REF.format(model="Result")},
                    "Message": {"type": "string", "description": (
                        "Extension: the latest progress note, e.g. why a `normal` task still "
                        "waits (capacity); absent when there is none")},
                    "Live": {"type": "array", "description": (
                        "Extension: each live output of Output.Live; absent without any"),
                        "items": {"$ref": _REF.format(model="LiveOutput")}},
                    "LiveHls": {"$ref": _REF.format(model="LiveHls"), "description": (
                        "Extension: the live HLS playlist of Output.LiveHls; absent without it")},
                },
                "required": ["TaskID", "Status", "Result"],
            },
            "DescribeReply": {
                "allOf": [
                    {"$ref": _REF.format(model="Task")},
                    {"type": "object", "properties": {"RequestID": request_id},
                     "required": ["RequestID"]},
                ]
            },
            "ListReply": {
                "type": "object",
                "properties": {
                    "TotalCount": {"type": "integer"},
                    "Offset": {"type": "integer"},
                    "Limit": {"type": "integer"},
                    "Tasks": {"type": "array", "items": {"$ref": _REF.format(model="Task")}},
                    "RequestID": request_id,
                },
                "required": ["TotalCount", "Offset", "Limit", "Tasks", "RequestID"],
            },
            "Error": {
                "type": "object",
                "properties": {
                    "ErrorCode": {"type": "string", "enum": [c.value for c in AdapterErrorCode]},
                    "ErrorMessage": {"type": "string", "description": "Names the field and the rule"},
                    "RequestID": request_id,
                },
                "required": ["ErrorCode", "ErrorMessage", "RequestID"],
            },
        }
    )
    error_response = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "webrecord Action protocol",
            "version": __version__,
            "description": (
                "Record web pages to video. One endpoint: POST / with {\"Action\", \"Data\"}. "
                "Authentication: API gateway application signature (Authorization: hmac id=, "
                "algorithm=, headers=, signature= over x-date, method, Accept, Content-Type, "
                "Content-MD5 and path), X-Date within 15 minutes, each signature usable once."
            ),
        },
        "paths": {
            "/": {
                "post": {
                    "operationId": "action",
                    "summary": ", ".join(a.value for a in pm.ActionName),
                    "security": [{"AppSignature": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": _REF.format(model=f"{a.value}Request")}
                                        for a in pm.ActionName
                                    ],
                                    "discriminator": {"propertyName": "Action"},
                                },
                                "examples": {
                                    name: {"value": body} for name, body in pm.EXAMPLES.items()
                                },
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Start, controls and UpdateLive: TaskReply; "
                            "Describe: DescribeReply; List: ListReply",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": _REF.format(model="TaskReply")},
                                            {"$ref": _REF.format(model="DescribeReply")},
                                            {"$ref": _REF.format(model="ListReply")},
                                        ]
                                    }
                                }
                            },
                        },
                        **{str(s): error_response for s in (400, 401, 404, 408, 409, 413, 429, 503)},
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "responses": {"200": {"description": "Serving"}, "503": error_response},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "AppSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": 'hmac id="ApiAppKey", algorithm="hmac-sha1", '
                    'headers="x-date", signature="..."',
                }
            },
        },
    }
