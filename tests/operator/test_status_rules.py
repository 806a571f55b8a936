"""Status reflection, conditions, pod failure classification and time-limit rules."""

from __future__ import annotations

from webrecord.api.models import ErrorCode, Phase, RecorderStatus, Result, VideoFile
from webrecord.api.resource import recorder_status
from webrecord.controller import status as st
from webrecord.controller.timestamps import rfc3339


def _rec(**kw) -> RecorderStatus:
    return RecorderStatus(task_id="t", **kw)


def test_reflect_only_changed_fields_and_keeps_create_time() -> None:
    current = {"phase": "normal", "createTime": 100, "podName": "t-recorder"}
    changes = st.reflect(current, _rec(status=Phase.RECORDING, create_time=90, start_time=105,
                                       recorded_seconds=1.23456), now=110)
    assert changes["phase"] == "recording"
    assert changes["startTime"] == 105
    assert "createTime" not in changes  # the operator's createTime stands
    assert changes["recordedSeconds"] == 1.235
    conds = {c["type"]: c for c in changes["conditions"]}
    assert conds["Recording"]["status"] == "True"
    assert conds["Finished"]["status"] == "False"
    again = st.reflect(st.merged(current, changes), _rec(status=Phase.RECORDING, start_time=105,
                                                         recorded_seconds=1.23456), now=111)
    assert again == {}


def test_finished_condition_carries_the_result() -> None:
    result = Result(videos=[VideoFile(filename="a.mp4", file_size=10, file_duration=2.0)])
    changes = st.reflect({"phase": "callback"}, _rec(status=Phase.FINISHED, result=result,
                                                    finish_time=200), now=200)
    conds = {c["type"]: c for c in changes["conditions"]}
    assert conds["Finished"]["status"] == "True" and conds["Finished"]["reason"] == "Succeeded"
    assert changes["result"]["videos"][0]["filename"] == "a.mp4"


def test_condition_transition_time_moves_only_on_flip() -> None:
    conds = st.with_condition(None, "X", True, "A", "m", now=1000)
    same = st.with_condition(conds, "X", True, "B", "m2", now=2000)
    assert same[0]["lastTransitionTime"] == conds[0]["lastTransitionTime"]
    assert same[0]["reason"] == "B"
    flipped = st.with_condition(same, "X", False, "C", "m3", now=3000)
    assert flipped[0]["lastTransitionTime"] == rfc3339(3000)


def test_finish_sets_error_and_times() -> None:
    current = {"phase": "recording", "createTime": 1, "startTime": 2}
    changes = st.finish(current, ErrorCode.RECORDER_LOST, "pod evicted", now=50)
    assert changes["phase"] == "finished" and changes["finishTime"] == 50
    assert changes["stopTime"] == 50
    assert changes["result"] == {"errorCode": "RecorderLost", "errorMessage": "pod evicted",
                                 "videos": []}
    described = recorder_status("t", st.merged(current, changes))
    assert described.status == Phase.FINISHED
    assert described.result.error_code == ErrorCode.RECORDER_LOST


def _pod(phase: str, **status) -> dict:
    return {"metadata": {"name": "t-recorder", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": phase, **status}}


def test_pod_failure_words() -> None:
    evicted = _pod("Failed", reason="Evicted", message="The node was low on resource: memory.")
    assert st.pod_failure(evicted) == (
        "recorder pod t-recorder failed (reason Evicted; The node was low on resource: memory.)"
    )
    oom = _pod("Failed", containerStatuses=[{"name": "recorder", "state": {
        "terminated": {"reason": "OOMKilled", "exitCode": 137}}}])
    assert "OOMKilled with exit code 137" in st.pod_failure(oom)
    assert st.deadline_exceeded(_pod("Failed", reason="DeadlineExceeded"))


def test_waiting_reason_and_address() -> None:
    pulling = _pod("Pending", containerStatuses=[{"name": "recorder", "state": {
        "waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}])
    assert st.waiting_reason(pulling) == "ImagePullBackOff: no such image"
    unscheduled = _pod("Pending", conditions=[{"type": "PodScheduled", "status": "False",
                                               "reason": "Unschedulable", "message": "0/3 nodes"}])
    assert st.waiting_reason(unscheduled) == "Unschedulable: 0/3 nodes"
    assert st.pod_address(pulling, 8090) is None
    assert st.pod_address(_pod("Running", podIP="10.1.2.3"), 8090) == "http://10.1.2.3:8090"
    assert st.pod_address(_pod("Running", podIP="fd00::1"), 8090) == "http://[fd00::1]:8090"
    assert st.created_at(pulling) == 1767225600.0


def test_final_status_from_termination_message() -> None:
    final = _rec(status=Phase.FINISHED, finish_time=9).model_dump_json(by_alias=True)
    pod = _pod("Succeeded", containerStatuses=[{"name": "recorder", "state": {
        "terminated": {"exitCode": 0, "message": final}}}])
    assert st.final_status(pod).status == Phase.FINISHED
    garbage = _pod("Failed", containerStatuses=[{"name": "recorder", "state": {
        "terminated": {"exitCode": 1, "message": "Traceback ..."}}}])
    assert st.final_status(garbage) is None


def test_time_limit_and_finish_deadline() -> None:
    # MaxDurationLimit is recorded time: a long pause does not count, recorded seconds do.
    rec = _rec(status=Phase.RECORDING, start_time=1000, create_time=990, recorded_seconds=69)
    assert not st.time_limit_passed({}, rec, limit_s=60, grace_s=10, now=5000, max_wall_s=9000)
    rec = _rec(status=Phase.RECORDING, start_time=1000, create_time=990, recorded_seconds=71)
    assert "recorded time" in st.time_limit_passed({}, rec, 60, 10, 1071, max_wall_s=9000)
    assert not st.time_limit_passed({}, _rec(status=Phase.UPLOAD, recorded_seconds=99), 60, 10,
                                    5000, max_wall_s=100)
    # Paused, waiting for ManualStart or stuck: the wall-clock cap from creation.
    paused = _rec(status=Phase.PAUSED, create_time=1000, recorded_seconds=5)
    assert not st.time_limit_passed({}, paused, 60, 10, 1109, max_wall_s=100)
    assert "wall-clock cap" in st.time_limit_passed({}, paused, 60, 10, 1111, max_wall_s=100)
    never = _rec(status=Phase.NORMAL)
    assert st.time_limit_passed({"createTime": 1000}, never, 60, 10, 1111, max_wall_s=100)
    assert not st.time_limit_passed({}, never, 60, 10, 99999, max_wall_s=100)

    forced = {"conditions": st.with_condition(None, st.COND_TIME_LIMIT, True, "Stopped", "", 2000)}
    busy = _rec(status=Phase.UPLOAD)
    assert not st.finish_overdue(forced, busy, deadline_s=30, now=2029)
    assert st.finish_overdue(forced, busy, deadline_s=30, now=2031)
    assert not st.finish_overdue({}, busy, deadline_s=30, now=99999)  # user's Stop: no deadline
    assert not st.finish_overdue(forced, _rec(status=Phase.FINISHED), 30, 99999)


def test_outcome_conditions_for_success_and_each_failure() -> None:
    """Delivered / Succeeded / Failed follow the Result; reasons are the ErrorCode."""
    video = VideoFile(filename="a.mp4", file_size=10, file_duration=2.0)
    cases = [
        (Result(videos=[video]), {"Delivered": ("True", "Delivered"), "Succeeded": ("True", "Succeeded"),
                                  "Failed": ("False", "Succeeded")}),
        (Result(videos=[video], error_code=ErrorCode.CALLBACK_FAILED, error_message="receiver down"),
         {"Delivered": ("True", "Delivered"), "Succeeded": ("False", "CallbackFailed"),
          "Failed": ("True", "CallbackFailed")}),
        (Result(error_code=ErrorCode.UPLOAD_FAILED, error_message="segments are kept in s3://b/x"),
         {"Delivered": ("False", "UploadFailed"), "Succeeded": ("False", "UploadFailed"),
          "Failed": ("True", "UploadFailed")}),
    ]
    for result, want in cases:
        changes = st.reflect({"phase": "upload"}, _rec(status=Phase.FINISHED, result=result), now=300)
        conds = {c["type"]: c for c in changes["conditions"]}
        got = {t: (conds[t]["status"], conds[t]["reason"]) for t in want}
        assert got == want, (result, got)
        if result.error_message:
            assert conds["Failed"]["message"] == result.error_message
    # Before the end: all three False, reason InProgress.
    changes = st.reflect({"phase": "normal"}, _rec(status=Phase.RECORDING), now=10)
    conds = {c["type"]: c for c in changes["conditions"]}
    assert {conds[t]["reason"] for t in ("Delivered", "Succeeded", "Failed")} == {"InProgress"}


def test_scheduled_condition_from_the_pod() -> None:
    pending = {"metadata": {"name": "t-recorder"}, "spec": {}, "status": {
        "phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                            "reason": "Unschedulable", "message": "0/1 nodes: cpu"}]}}
    conds = st.scheduled_conditions({}, pending, now=5)
    assert conds is not None and conds[0]["status"] == "False" and conds[0]["reason"] == "Unschedulable"
    assert "0/1 nodes: cpu" in conds[0]["message"]
    assert st.scheduled_conditions({"conditions": conds}, pending, now=6) is None  # no change
    bound = {"metadata": {"name": "t-recorder"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}}
    conds = st.scheduled_conditions({"conditions": conds}, bound, now=7)
    assert conds[0]["status"] == "True" and "n1" in conds[0]["message"]
    assert st.scheduled_conditions({}, {"metadata": {"name": "x"}, "status": {}}, now=1) is None


def test_stamp_generation_marks_only_conditions_written_now() -> None:
    kept = {"type": "A", "status": "True", "observedGeneration": 1}
    fresh = {"type": "B", "status": "False"}
    assert st.stamp_generation([kept, fresh], 3) == [kept, {**fresh, "observedGeneration": 3}]
