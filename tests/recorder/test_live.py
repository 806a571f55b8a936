"""Live outputs against real receivers: nginx-rtmp and an SRT listener get the recording's own
encode (the same packets as the file), while the file stays as it would be without them."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from webrecord.api.models import (Action, LiveOutput, LiveState, OutputSpec, RecordingSpec,
                                  RecordingTask)
from webrecord.api.live import parse_live_url
from webrecord.recorder.control import ControlServer
from webrecord.egress.policy import EgressPolicy, EgressSettings
from webrecord.recorder.liverelay import Relay, tls_options
from webrecord.recorder.session import Session
from webrecord.recorder.settings import RecorderSettings

from .media import assert_av, assert_file_whole, frame_codes, packet_hashes, probe
from .receivers import NginxRtmp, NginxRtmps, SrtListener, TestCA
from .test_session import running, wait_for

pytestmark = pytest.mark.browser

KEY = "secret-stream-key"


def live_session(tmp_path: Path, url: str, live: list[str],
                 egress: EgressSettings | None = None) -> Session:
    spec = RecordingSpec(record_url=url, width=640, height=360,
                         output=OutputSpec(live=[LiveOutput(url=u) for u in live] or None))
    task = RecordingTask(task_id="live", create_time=int(time.time()), spec=spec)
    settings = RecorderSettings(segment_seconds=3, live_retry_min_seconds=0.5,
                                live_retry_max_seconds=1.0)
    return Session(task, tmp_path / "work", settings,
                   egress=egress or EgressSettings(allow_loopback=True))


def received_codes(path: Path) -> np.ndarray:
    """The page clock (s) of every frame a receiver got."""
    _, clock = frame_codes(path)
    return clock


def assert_same_encode(received: Path, session: Session, min_frames: int) -> np.ndarray:
    """The receiver got at least `min_frames` frames, each a packet of the recording (no second
    encode), in order, showing the page clock moving forward. FLV and MP4 store H.264 alike
    (length-prefixed), TS as a byte stream: each is compared with the same kind."""
    got = packet_hashes(received)
    if received.suffix == ".ts":
        file_hashes = [h for p in session.segment_paths() for h in packet_hashes(p)]
    else:
        file_hashes = packet_hashes(session.packaged.path)
    assert len(got) >= min_frames, (received, len(got))
    known = set(file_hashes)
    foreign = [h for h in got if h not in known]
    assert not foreign, f"{len(foreign)} of {len(got)} received packets are not in the file"
    codes = received_codes(received)
    assert len(codes) >= min_frames
    assert np.all(np.diff(codes) >= 0), codes  # never backwards
    assert codes[-1] - codes[0] > min_frames / 30 * 0.8, codes
    return codes


@pytest.mark.timeout(150)
async def test_rtmp_and_srt_receivers_get_the_recordings_own_encode(tmp_path, page_server, caplog):
    nginx = NginxRtmp(tmp_path / "nginx").start()
    srt = SrtListener(tmp_path / "srt").start()
    try:
        session = live_session(tmp_path, f"{page_server}/recorder_framecode.html",
                               [nginx.url(KEY), srt.url])
        caplog.set_level(logging.INFO)
        async with running(session) as run:
            await asyncio.wait_for(session.started_event.wait(), 30)
            await wait_for(lambda: all(o.state == LiveState.LIVE
                                       for o in session.live_status().live or []), 20)
            live = session.live_status().wire()["live"]
            await asyncio.sleep(6)
            await session.control(Action.STOP)
            status = await asyncio.wait_for(run, 60)
        assert status.result.error_code is None, status.result
        assert [o["state"] for o in live] == ["live", "live"], live
        # What a caller sees names the receiver, never its key.
        assert live[0]["url"] == f"rtmp://127.0.0.1:{nginx.port}/live/***", live
        assert live[1]["url"] == f"srt://127.0.0.1:{srt.port}?***", live
        text = json.dumps(status.wire()) + "\n".join(r.getMessage() + json.dumps(
            getattr(r, "fields", {}), default=str) for r in caplog.records)
        assert KEY not in text and "secret-srt-key" not in text
        srt.proc.wait(15)  # the relay ended the stream: the listener exits

        recorded = session.packaged.path
        assert_av(recorded, 640, 360)
        rtmp_files = nginx.recordings(KEY)
        assert len(rtmp_files) == 1, rtmp_files
        assert "app='live'" in nginx.log()  # what nginx logs of a client's RTMP connect
        assert_av(rtmp_files[0], 640, 360)
        assert_same_encode(rtmp_files[0], session, 5 * 30)
        assert_same_encode(srt.files[0], session, 5 * 30)
        assert_file_whole(recorded)
    finally:
        nginx.kill()
        srt.kill()


@pytest.mark.timeout(200)
async def test_receivers_come_and_go_while_the_file_records_on(tmp_path, page_server):
    """nginx killed and started again: the relay reconnects (a new publish). An SRT receiver
    added mid-recording gets the stream from then on; the RTMP one removed ends its publish.
    Pause holds the stream (no new frames, connection kept). The file misses nothing."""
    nginx = NginxRtmp(tmp_path / "nginx").start()
    srt = SrtListener(tmp_path / "srt").start()
    try:
        session = live_session(tmp_path, f"{page_server}/recorder_framecode.html",
                               [nginx.url(KEY)])
        async with running(session) as run:
            await asyncio.wait_for(session.started_event.wait(), 30)

            def state(i: int = 0) -> LiveState | None:
                outputs = session.live_status().live or []
                return outputs[i].state if len(outputs) > i else None

            await wait_for(lambda: state() == LiveState.LIVE, 20)
            await asyncio.sleep(3)
            nginx.kill()  # the receiver goes away ...
            await wait_for(lambda: state() == LiveState.RETRYING, 20)
            assert KEY not in (session.live_status().live[0].message or "")
            await asyncio.sleep(1.5)
            nginx.start()  # ... and comes back on the same port
            await wait_for(lambda: state() == LiveState.LIVE, 20)
            assert session.live_status().live[0].reconnects >= 1
            await asyncio.sleep(3)
            # Add SRT through the control endpoint, then pause: both stay connected, paused.
            control = ControlServer(session, "tok")
            port = await control.start()
            try:
                async with aiohttp.ClientSession(
                        headers={"Authorization": "Bearer tok"}) as http:
                    put = functools.partial(http.put, f"http://127.0.0.1:{port}/live")
                    async with put(json={"live": [{"url": "http://x.test/a"}]}) as resp:
                        assert resp.status == 400
                        assert (await resp.json())["errorMessage"] == (
                            "live.0.url: must be an rtmp://, rtmps:// or srt:// URL")
                    async with put(json={"live": [{"url": nginx.url(KEY)},
                                                  {"url": srt.url}]}) as resp:
                        assert resp.status == 200, await resp.text()
                        body = await resp.json()
            finally:
                await control.stop()
            assert [o["url"] for o in body["live"]] == [
                f"rtmp://127.0.0.1:{nginx.port}/live/***", f"srt://127.0.0.1:{srt.port}?***"]
            await wait_for(lambda: state(1) == LiveState.LIVE, 20)
            await asyncio.sleep(2)
            await session.control(Action.PAUSE)
            assert [o.state for o in session.live_status().live] == [LiveState.PAUSED] * 2
            sent = [o.sent_bytes for o in session.live_status().live]
            await asyncio.sleep(2)
            assert [o.sent_bytes for o in session.live_status().live] == sent  # nothing while paused
            await session.control(Action.RESUME)
            await asyncio.sleep(3)
            # Remove RTMP: its publish ends; SRT goes on.
            await session.set_live([LiveOutput(url=srt.url)])
            assert [o.url for o in session.live_status().live] == [f"srt://127.0.0.1:{srt.port}?***"]
            await asyncio.sleep(2)
            await session.control(Action.STOP)
            status = await asyncio.wait_for(run, 60)
        assert status.result.error_code is None, status.result
        srt.proc.wait(15)

        first, second = nginx.recordings(KEY)  # one publish before the kill, one after
        before = assert_same_encode(first, session, 2 * 30)
        after = assert_same_encode(second, session, 4 * 30)
        assert after[0] > before[-1]  # the outage is a gap, not a replay
        got_srt = assert_same_encode(srt.files[0], session, 4 * 30)
        # SRT got the time before the pause and after the Resume (one connection) but not the
        # paused seconds: a held frame, then the stream goes on.
        assert np.max(np.diff(got_srt)) > 1.5, np.diff(got_srt).max()
        assert got_srt[0] > after[0]  # joined when added, not from the start
        # The file: the pause is its only cut (the page clock jumps by the paused time there);
        # no frame lost around the outage, the addition or the removal.
        pts, clock = frame_codes(session.packaged.path)
        cut = int(np.argmax(np.diff(clock - pts)))
        assert np.diff(clock - pts)[cut] > 1.5  # the 2 s pause
        with_pause = session.packaged.path
        assert len(pts) >= 0.97 * (pts[-1] - pts[0]) * 30, len(pts)
        assert abs((clock[cut] - clock[0]) - (pts[cut] - pts[0])) < 0.3, with_pause
        assert abs((clock[-1] - clock[cut + 1]) - (pts[-1] - pts[cut + 1])) < 0.3, with_pause
    finally:
        nginx.kill()
        srt.kill()


@pytest.mark.timeout(90)
async def test_a_refused_receiver_never_gets_a_connection(tmp_path, page_server):
    """The egress policy judges the receiver's host before connecting: a refused range is
    never contacted (the listener sees nobody), the status says why, the recording goes on."""
    nginx = NginxRtmp(tmp_path / "nginx", host="127.0.0.2").start()
    try:
        # The page's address is an exception; the rest of loopback is refused.
        egress = EgressSettings(allow_loopback=False, allow_cidrs=["127.0.0.1/32"])
        url = nginx.url(KEY)
        session = live_session(tmp_path, f"{page_server}/recorder_framecode.html", [url], egress)
        async with running(session) as run:
            await asyncio.wait_for(session.started_event.wait(), 30)
            await wait_for(lambda: (session.live_status().live or [None])[0] is not None
                           and session.live_status().live[0].state == LiveState.REFUSED, 20)
            await asyncio.sleep(2)
            output = session.live_status().live[0]
            await session.control(Action.STOP)
            status = await asyncio.wait_for(run, 60)
        assert status.result.error_code is None and session.packaged is not None
        assert output.message == "host 127.0.0.2 is a loopback address", output
        assert output.sent_bytes == 0 and KEY not in output.url
        assert nginx.recordings(KEY) == [] and "app='live'" not in nginx.log()
    finally:
        nginx.kill()


@pytest.mark.timeout(120)
async def test_a_receiver_that_never_reads_costs_the_recording_nothing(tmp_path, page_server):
    """A receiver that accepts the connection and then reads nothing: the relay's ffmpeg
    blocks, its buffer fills and its bytes are dropped; the file records on without a gap."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    server.settimeout(30)
    accepting = threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True)
    accepting.start()
    try:
        settings_bytes = 256 * 1024
        session = live_session(tmp_path, f"{page_server}/recorder_framecode.html",
                               [f"rtmp://127.0.0.1:{port}/live/{KEY}"])
        session.settings.live_buffer_bytes = settings_bytes
        async with running(session) as run:
            await asyncio.wait_for(session.started_event.wait(), 30)
            await wait_for(lambda: session.live_status().live[0].dropped_bytes > 0, 40)
            output = session.live_status().live[0]
            await asyncio.sleep(1)
            await session.control(Action.STOP)
            status = await asyncio.wait_for(run, 60)
        assert held, "the relay never connected"
        assert output.state != LiveState.LIVE and output.sent_bytes <= settings_bytes + (1 << 20)
        assert status.result.error_code is None, status.result
        assert probe(session.packaged.path)["duration"] > 3
        assert_file_whole(session.packaged.path)
    finally:
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.timeout(150)
async def test_rtmps_receivers_are_verified(tmp_path, page_server):
    """rtmps:// through real TLS (nginx's stream module in front of nginx-rtmp, certificates
    from a CA made for the test): the receiver whose certificate chains to the configured CA
    and names the host gets the stream; one with another name and one no CA signed are never
    sent a byte (ffmpeg alone would have streamed the key to both)."""
    ca = TestCA(tmp_path / "ca")
    nginx = NginxRtmps(tmp_path / "nginx", [ca.issue("localhost", "DNS:localhost"),
                                            ca.issue("wrong", "DNS:wrong.test"),
                                            ca.self_signed("untrusted", "DNS:localhost")]).start()
    try:
        keys = ["tls-good-key", "tls-wrong-name-key", "tls-untrusted-key"]
        session = live_session(tmp_path, f"{page_server}/recorder_framecode.html",
                               [nginx.tls_url(i, key) for i, key in enumerate(keys)])
        session.settings.live_ca_file = str(ca.cert)

        def states() -> list[LiveState]:
            return [o.state for o in session.live_status().live or []]

        async with running(session) as run:
            await asyncio.wait_for(session.started_event.wait(), 30)
            await wait_for(lambda: states()[:1] == [LiveState.LIVE], 30)
            await wait_for(lambda: states()[1:] == [LiveState.RETRYING] * 2, 30)
            seen: list[set[str]] = [set(), set(), set()]  # why each retries, over 5 s
            for _ in range(50):
                for why, output in zip(seen, session.live_status().live):
                    why.add(output.message or "")
                await asyncio.sleep(0.1)
            outputs = session.live_status().live
            await session.control(Action.STOP)
            status = await asyncio.wait_for(run, 60)
        assert status.result.error_code is None, status.result
        good, wrong, untrusted = outputs
        assert good.url == f"rtmps://localhost:{nginx.tls_ports[0]}/live/***", good
        assert seen[0] == {""}, seen  # never retried
        assert "[tls] The certificate's owner does not match hostname localhost" in seen[1], seen
        assert "[tls] Peer certificate failed verification" in seen[2], seen
        assert wrong.reconnects >= 1 and untrusted.reconnects >= 1
        assert not any(k in m for why in seen for m in why for k in keys)
        [received] = nginx.recordings(keys[0])
        assert_av(received, 640, 360)
        assert_same_encode(received, session, 4 * 30)
        # The handshake failed before RTMP began: the stream key never left the recorder.
        assert nginx.recordings(keys[1]) == nginx.recordings(keys[2]) == []
        assert keys[0] in nginx.log() and keys[1] not in nginx.log() and keys[2] not in nginx.log()
        assert_file_whole(session.packaged.path)
    finally:
        nginx.kill()


def test_rtmps_tls_options() -> None:
    """Verify by default (ffmpeg's default is not to); the CA bundle when set; a name is the
    SNI and the certificate's name while the relay dials the address it judged."""
    named, literal = parse_live_url("rtmps://live.test/app/k"), parse_live_url("rtmps://192.0.2.1/app/k")
    assert tls_options(RecorderSettings(), named) == ["-tls_verify", "1", "-verifyhost", "live.test"]
    assert tls_options(RecorderSettings(live_ca_file="/ca.pem"), literal) == [
        "-tls_verify", "1", "-ca_file", "/ca.pem"]
    assert tls_options(RecorderSettings(live_tls_verify=False), named)[:2] == ["-tls_verify", "0"]


@pytest.mark.timeout(30)
async def test_a_retry_names_the_receivers_fault_not_the_inputs_noise() -> None:
    """Joining mid-stream, the relay's probe logs ~100 decoder lines before it dials (seen on a
    busy machine: the status said "Last message repeated 1 times" instead of the TLS cause).
    A real process prints that noise, then the receiver's fault, then its consequence."""
    url = "rtmps://localhost:1935/live/" + KEY
    relay = Relay(parse_live_url(url), RecorderSettings(), EgressPolicy())
    noise = ("[h264 @ 0x55e675309240] non-existing PPS 0 referenced\n"
             "[h264 @ 0x55e675309240] decode_slice_header error\n"
             "    Last message repeated 1 times\n") * 40
    lines = (noise + "[tls @ 0x55e67542dc00] The certificate's owner does not match hostname "
             f"localhost\n{url}: Input/output error\n")
    proc = await asyncio.create_subprocess_exec("cat", stdin=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT,
                                                stdout=asyncio.subprocess.PIPE)
    proc.stderr = proc.stdout  # cat's output stands in for ffmpeg's stderr
    reader = asyncio.create_task(relay._errors(proc, url))
    proc.stdin.write(lines.encode())
    proc.stdin.close()
    await asyncio.wait_for(reader, 5)
    await proc.wait()
    assert relay._error() == "[tls] The certificate's owner does not match hostname localhost"
    assert KEY not in " ".join(relay._stderr)
