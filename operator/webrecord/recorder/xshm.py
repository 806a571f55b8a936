"""The two X11 calls the frame-locked grabber needs, through ctypes on the client libraries
Chromium already pulls in (libX11, libXext, libXdamage): grab the screen into shared memory
(MIT-SHM, as ffmpeg's x11grab does: the server copies straight into our buffer), and hear when
the screen changed (DAMAGE: Chromium presented a frame)."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections import deque

ALL_PLANES = 0xFFFFFFFF
Z_PIXMAP = 2
DAMAGE_REPORT_NON_EMPTY = 3
IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0


class XShmSegmentInfo(ctypes.Structure):
    _fields_ = [("shmseg", ctypes.c_ulong), ("shmid", ctypes.c_int),
                ("shmaddr", ctypes.c_void_p), ("readOnly", ctypes.c_int)]


def _load() -> tuple[ctypes.CDLL, ctypes.CDLL, ctypes.CDLL, ctypes.CDLL]:
    x11 = ctypes.CDLL("libX11.so.6")
    xext = ctypes.CDLL("libXext.so.6")
    damage = ctypes.CDLL("libXdamage.so.1")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x11.XDefaultVisual.restype = ctypes.c_void_p
    x11.XDefaultVisual.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XNextEvent.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    xext.XShmQueryExtension.argtypes = [ctypes.c_void_p]
    xext.XShmCreateImage.restype = ctypes.c_void_p
    xext.XShmCreateImage.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_void_p, ctypes.POINTER(XShmSegmentInfo),
                                     ctypes.c_uint, ctypes.c_uint]
    xext.XShmAttach.argtypes = [ctypes.c_void_p, ctypes.POINTER(XShmSegmentInfo)]
    xext.XShmGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_ulong]
    damage.XDamageQueryExtension.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                                             ctypes.POINTER(ctypes.c_int)]
    damage.XDamageCreate.restype = ctypes.c_ulong
    damage.XDamageCreate.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int]
    damage.XDamageSubtract.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong,
                                       ctypes.c_ulong]
    libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    # Two connections on two threads (grabs, damage events): Xlib must know.
    x11.XInitThreads()
    return x11, xext, damage, libc


X11, XEXT, XDAMAGE, LIBC = _load()


class XError(RuntimeError):
    pass


def _open(display: str) -> int:
    dpy = X11.XOpenDisplay(display.encode())
    if not dpy:
        raise XError(f"cannot open display {display}")
    return dpy


class ScreenGrabber:
    """Grabs the top-left width x height of the screen into one of `buffers` shared memory
    images; `view(i)` is buffer i's bytes (BGR0 rows, 4 bytes a pixel, no padding)."""

    def __init__(self, display: str, width: int, height: int, buffers: int) -> None:
        self.dpy = _open(display)
        if not XEXT.XShmQueryExtension(self.dpy):
            raise XError(f"display {display} has no MIT-SHM")
        self.root = X11.XDefaultRootWindow(self.dpy)
        self.frame_bytes = width * height * 4
        self.images: list[int] = []
        self.views: list[memoryview] = []
        self._infos: list[XShmSegmentInfo] = []  # referenced by the images: keep alive
        visual = X11.XDefaultVisual(self.dpy, 0)
        for _ in range(buffers):
            info = XShmSegmentInfo()
            info.shmid = LIBC.shmget(IPC_PRIVATE, self.frame_bytes, IPC_CREAT | 0o600)
            if info.shmid < 0:
                raise XError(f"shmget: errno {ctypes.get_errno()}")
            info.shmaddr = LIBC.shmat(info.shmid, None, 0)
            info.readOnly = 0
            image = XEXT.XShmCreateImage(self.dpy, visual, 24, Z_PIXMAP, info.shmaddr,
                                         ctypes.byref(info), width, height)
            if not image or not XEXT.XShmAttach(self.dpy, ctypes.byref(info)):
                raise XError("XShmCreateImage/XShmAttach failed")
            X11.XSync(self.dpy, 0)
            # Marked for removal now: it goes when both we and the server let go, even if we die.
            LIBC.shmctl(info.shmid, IPC_RMID, None)
            self._infos.append(info)
            self.images.append(image)
            raw = (ctypes.c_char * self.frame_bytes).from_address(info.shmaddr)
            self.views.append(memoryview(raw).cast("B"))

    def grab(self, i: int) -> None:
        if not XEXT.XShmGetImage(self.dpy, self.root, self.images[i], 0, 0, ALL_PLANES):
            raise XError("XShmGetImage failed")


class PresentationWatch:
    """Monotonic times at which the screen changed, heard on a thread of its own (one DAMAGE
    event per change: the damage is subtracted each time)."""

    def __init__(self, display: str, keep: int = 120) -> None:
        self.dpy = _open(display)
        self.event_base = ctypes.c_int()
        error_base = ctypes.c_int()
        if not XDAMAGE.XDamageQueryExtension(self.dpy, ctypes.byref(self.event_base),
                                             ctypes.byref(error_base)):
            raise XError(f"display {display} has no DAMAGE")
        self.damage = XDAMAGE.XDamageCreate(self.dpy, X11.XDefaultRootWindow(self.dpy),
                                            DAMAGE_REPORT_NON_EMPTY)
        self.times: deque[float] = deque(maxlen=keep)
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="damage", daemon=True).start()

    def _run(self) -> None:
        event = (ctypes.c_long * 24)()  # XEvent: a union of 24 longs
        event_type = ctypes.cast(event, ctypes.POINTER(ctypes.c_int))
        while True:
            X11.XNextEvent(self.dpy, event)  # releases the GIL while it waits
            if event_type[0] != self.event_base.value:
                continue
            now = time.monotonic()
            XDAMAGE.XDamageSubtract(self.dpy, self.damage, 0, 0)
            X11.XSync(self.dpy, 0)
            with self._lock:
                self.times.append(now)

    def since(self, start: float) -> list[float]:
        with self._lock:
            return [t for t in self.times if t >= start]
