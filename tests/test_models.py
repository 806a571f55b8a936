"""The task models: defaults, ranges and the protocol shapes built from them."""

import pytest
from pydantic import ValidationError

from webrecord.api.models import Phase, RecorderStatus, RecordingSpec, Result, VideoFile
from webrecord.api.protocol import describe_body


def test_zero_means_default() -> None:
    spec = RecordingSpec(record_url="http://example.test/", width=0, height=0, max_duration_limit=0)
    assert (spec.width, spec.height, spec.max_duration_limit) == (1280, 720, 21600)


@pytest.mark.parametrize(
    ("field", "value"),
    [("width", 2561), ("height", -1), ("max_duration_limit", 36001), ("record_url", "ftp://x")],
)
def test_out_of_range_names_the_field(field: str, value: object) -> None:
    data = {"record_url": "http://example.test/", field: value}
    with pytest.raises(ValidationError) as info:
        RecordingSpec(**data)
    assert info.value.errors()[0]["loc"][0] in (field, RecordingSpec.model_fields[field].alias)


def test_encrypt_key_must_be_hex_and_hls() -> None:
    with pytest.raises(ValidationError, match="32 hexadecimal"):
        RecordingSpec.model_validate(
            {"recordUrl": "http://x.test/", "output": {"video": {"muxer": "hls", "encryptKey": "zz"}}}
        )
    with pytest.raises(ValidationError, match="requires muxer 'hls'"):
        RecordingSpec.model_validate(
            {"recordUrl": "http://x.test/", "output": {"video": {"encryptKey": "0" * 32}}}
        )


def test_describe_body_only_has_times_that_happened() -> None:
    status = RecorderStatus(
        task_id="t1",
        status=Phase.FINISHED,
        create_time=10,
        start_time=11,
        result=Result(videos=[VideoFile(filename="a.mp4", file_size=5, file_duration=1.5)]),
    )
    body = describe_body(status)
    assert body["CreateTime"] == 10 and body["StartTime"] == 11
    assert "StopTime" not in body and "CancelTime" not in body
    assert body["Result"] == {
        "ErrorCode": "",
        "ErrorMessage": "",
        "Videos": [{"Filename": "a.mp4", "FileSize": 5, "FileDuration": 1.5}],
    }
