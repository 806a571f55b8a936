"""A Matroska stream of raw BGR0 frames, each with its own timestamp, for ffmpeg to read from a
pipe. ffmpeg's rawvideo input has no per-frame times (it counts frames at a fixed rate); the
frame-locked grabber (framegrab) captures when Chromium's frames allow, so each frame carries
the wall clock of its capture. One cluster per frame: its timecode is the frame's time in
microseconds, so no block needs a relative offset."""

from __future__ import annotations

import struct

EBML = 0x1A45DFA3
SEGMENT = 0x18538067
INFO, TIMECODE_SCALE, MUXING_APP, WRITING_APP = 0x1549A966, 0x2AD7B1, 0x4D80, 0x5741
TRACKS, TRACK_ENTRY, TRACK_NUMBER, TRACK_UID, TRACK_TYPE, CODEC_ID, DEFAULT_DURATION = (
    0x1654AE6B, 0xAE, 0xD7, 0x73C5, 0x83, 0x86, 0x23E383)
VIDEO, PIXEL_WIDTH, PIXEL_HEIGHT, COLOUR_SPACE = 0xE0, 0xB0, 0xBA, 0x2EB524
CLUSTER, CLUSTER_TIMECODE, SIMPLE_BLOCK = 0x1F43B675, 0xE7, 0xA3
UNKNOWN_SIZE = bytes.fromhex("01FFFFFFFFFFFFFF")  # a live stream: the segment never ends
# ffmpeg's raw pixel format tag for BGR0 (libavcodec/raw.c): X11's 24-bit TrueColor in memory.
BGR0 = b"BGR\x00"


def _size(n: int) -> bytes:
    """EBML's variable-length size: a marker bit, then the number (all-ones is reserved)."""
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(f"element too large: {n} bytes")


def _id(ident: int) -> bytes:
    return ident.to_bytes((ident.bit_length() + 7) // 8, "big")


def element(ident: int, payload: bytes) -> bytes:
    return _id(ident) + _size(len(payload)) + payload


def uint(ident: int, value: int) -> bytes:
    return element(ident, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def stream_header(width: int, height: int, fps: int) -> bytes:
    """EBML header, an open-ended segment, microsecond timecodes, one raw BGR0 video track of
    nominal rate `fps`. The rate matters: ffmpeg hands it to the encoder, which writes it into
    the H.264 stream (VUI timing); without it players and the HLS muxer read frame durations of
    1/240 s and a 5.7 s recording became a 4.7 s playlist."""
    ebml = element(EBML, uint(0x4286, 1) + uint(0x42F7, 1) + uint(0x42F2, 4) + uint(0x42F3, 8)
                   + element(0x4282, b"matroska") + uint(0x4287, 4) + uint(0x4285, 2))
    info = element(INFO, uint(TIMECODE_SCALE, 1000) + element(MUXING_APP, b"webrecord")
                   + element(WRITING_APP, b"webrecord"))
    video = element(VIDEO, uint(PIXEL_WIDTH, width) + uint(PIXEL_HEIGHT, height)
                    + element(COLOUR_SPACE, BGR0))
    track = element(TRACK_ENTRY, uint(TRACK_NUMBER, 1) + uint(TRACK_UID, 1) + uint(TRACK_TYPE, 1)
                    + uint(DEFAULT_DURATION, round(1e9 / fps))  # ns per frame
                    + element(CODEC_ID, b"V_UNCOMPRESSED") + video)
    return ebml + _id(SEGMENT) + UNKNOWN_SIZE + info + element(TRACKS, track)


def frame_head(time_us: int, frame_bytes: int) -> bytes:
    """What goes before one frame's pixels: a cluster at `time_us` holding one keyframe block
    (track 1, offset 0) of `frame_bytes`."""
    if time_us < 0:
        raise ValueError("Matroska timecodes are unsigned")
    block_head = b"\x81" + struct.pack(">hB", 0, 0x80)
    block = _id(SIMPLE_BLOCK) + _size(len(block_head) + frame_bytes) + block_head
    timecode = uint(CLUSTER_TIMECODE, time_us)
    return _id(CLUSTER) + _size(len(timecode) + len(block) + frame_bytes) + timecode + block
