"""The latest timestamp written to an MPEG-TS file that is still being written.

Capture.stop uses it to let a lagging encoder finish what was grabbed before the stop: ffmpeg
discards its queued frames when told to quit, and its -progress report cannot say how far
behind it is (with -copyts it counts from its first packet, not on the file's clock). The file
can: every packet is flushed as it is muxed (capture.py), and PES timestamps are the segments'
clock (wall clock minus the task's epoch)."""

from __future__ import annotations

import os
from pathlib import Path

PACKET = 188
SYNC = 0x47
PTS_HZ = 90_000
# A 2560x2560 keyframe is several MB: a tail this long holds PES starts unless the file is
# only a keyframe long. Read from the page cache, it costs a millisecond or two.
TAIL_BYTES = 8 * 1024 * 1024
FIRST_WINDOW = 64 * 1024


def _pes_pts(packet: bytes) -> int | None:
    """The PTS (90 kHz ticks) of a TS packet that starts a PES with one, else None."""
    if packet[0] != SYNC or not packet[1] & 0x40:  # not a packet boundary, or no PES start
        return None
    control = (packet[3] >> 4) & 0x3
    if not control & 0x1:  # adaptation field only, no payload
        return None
    start = 4 + (1 + packet[4] if control & 0x2 else 0)
    pes = packet[start:]
    # PSI sections (PAT, PMT) start with a pointer field, never with the PES start code.
    if len(pes) < 14 or pes[:3] != b"\x00\x00\x01" or not pes[7] & 0x80:
        return None
    p = pes[9:14]
    return (((p[0] >> 1) & 0x7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7
            | p[4] >> 1)


def last_pts(path: Path, tail_bytes: int = TAIL_BYTES, enough: int = 8) -> float | None:
    """Seconds of the latest PES timestamp among the last `enough` PES starts in the last
    `tail_bytes` of `path` (None: no file, or no PES starts there yet). The tail is read in
    windows growing from FIRST_WINDOW, so a probe of a 720p file reads 64 KiB, not 8 MiB (the
    drain probes every 20 ms); a partly written last packet is ignored. The latest of several,
    not the last one: the muxer may write a buffered sound packet after a newer picture."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            window = FIRST_WINDOW
            while True:
                # Our own muxer writes whole packets from offset 0: boundaries are multiples of 188.
                start = max(0, size - min(window, tail_bytes)) // PACKET * PACKET
                f.seek(start)
                stamps = _stamps_backwards(f.read(size - start), enough)
                if len(stamps) >= enough or start == 0 or window >= tail_bytes:
                    break
                window *= 16
    except OSError:
        return None
    return max(stamps) / PTS_HZ if stamps else None


def _stamps_backwards(data: bytes, enough: int) -> list[int]:
    """PTS of up to `enough` PES starts in `data` (packet-aligned), from its end backwards."""
    stamps: list[int] = []
    offset = len(data) // PACKET * PACKET - PACKET
    while offset >= 0 and len(stamps) < enough:
        pts = _pes_pts(data[offset:offset + PACKET])
        if pts is not None:
            stamps.append(pts)
        offset -= PACKET
    return stamps
