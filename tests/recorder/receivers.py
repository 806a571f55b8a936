"""Real live-stream receivers for the tests: nginx with the RTMP module (Debian
libnginx-mod-rtmp) recording every publish to a file, optionally behind TLS listeners of its
stream module (Debian libnginx-mod-stream: rtmps:// is RTMP inside TLS, terminated there) with
certificates made by openssl, and an SRT listener (srt-tools' srt-live-transmit) writing what
it receives to a file. Each runs as a child of the test on a
loopback port, with its own config in a temp dir, and can be killed and started again on the
same port (a receiver that goes away and comes back)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

NGINX = "/usr/sbin/nginx"
RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
NGINX_CONF = """
load_module {module};
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen {host}:{port};
        application live {{
            live on;
            record all;
            record_path {dir}/rec;
            record_unique on;
        }}
    }}
}}
"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(host: str, port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"receiver exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


class NginxRtmp:
    """rtmp://127.0.0.1:<port>/live/<key>; every publish recorded to rec/<key>-<time>.flv."""

    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        self.dir = directory
        self.host = host
        (directory / "rec").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (directory / "nginx.conf").write_text(
            NGINX_CONF.format(module=RTMP_MODULE, dir=directory, host=host, port=self.port))
        self.proc: subprocess.Popen | None = None

    def url(self, key: str) -> str:
        return f"rtmp://{self.host}:{self.port}/live/{key}"

    def start(self) -> "NginxRtmp":
        self.proc = subprocess.Popen([NGINX, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                                      "-c", str(self.dir / "nginx.conf")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait_listening(self.host, self.port, self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def recordings(self, key: str) -> list[Path]:
        """The files of each publish of `key`, oldest first."""
        return sorted((self.dir / "rec").glob(f"{key}-*.flv"), key=lambda p: p.stat().st_mtime)

    def log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
TLS_SERVER = """
    server {{
        listen {host}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        proxy_pass {host}:{rtmp_port};
    }}
"""


class NginxRtmps(NginxRtmp):
    """NginxRtmp plus one TLS listener per (certificate, key): rtmps://<name>:<tls port>/live/<key>
    lands in the same recordings as rtmp://."""

    def __init__(self, directory: Path, certs: list[tuple[Path, Path]]) -> None:
        super().__init__(directory)
        self.tls_ports = [free_port() for _ in certs]
        servers = "".join(TLS_SERVER.format(host=self.host, port=port, cert=cert, key=key,
                                            rtmp_port=self.port)
                          for port, (cert, key) in zip(self.tls_ports, certs))
        conf = directory / "nginx.conf"
        conf.write_text(f"load_module {STREAM_MODULE};\n" + conf.read_text()
                        + f"stream {{{servers}}}\n")

    def tls_url(self, index: int, key: str, name: str = "localhost") -> str:
        return f"rtmps://{name}:{self.tls_ports[index]}/live/{key}"

    def start(self) -> "NginxRtmps":
        super().start()
        for port in self.tls_ports:
            assert self.proc is not None
            _wait_listening(self.host, port, self.proc)
        return self


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


class TestCA:
    """A private CA made with openssl for one test, and server certificates signed by it."""

    __test__ = False  # not a test class

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = directory / "ca.pem", directory / "ca.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=webrecord test CA", "-keyout", str(self.key), "-out", str(self.cert),
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, sans: str) -> tuple[Path, Path]:
        """A server certificate for `sans` ("DNS:localhost,IP:127.0.0.1"): (cert, key)."""
        cert, key, csr = (self.dir / f"{name}.pem", self.dir / f"{name}.key",
                          self.dir / f"{name}.csr")
        ext = self.dir / f"{name}.ext"
        ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(key), "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
        return cert, key

    def self_signed(self, name: str, sans: str) -> tuple[Path, Path]:
        """A certificate for `sans` that no CA signed."""
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
                 "-addext", f"subjectAltName={sans}")
        return cert, key


class SrtListener:
    """srt://127.0.0.1:<port>: what arrives is appended to out-<n>.ts (n: the start count)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port(socket.SOCK_DGRAM)
        self.proc: subprocess.Popen | None = None
        self.files: list[Path] = []

    @property
    def url(self) -> str:
        return f"srt://127.0.0.1:{self.port}?streamid=secret-srt-key"

    def start(self) -> "SrtListener":
        out = self.dir / f"out-{len(self.files)}.ts"
        self.files.append(out)
        with open(out, "wb") as sink:
            # -a no: one caller, then exit when it leaves (the test sees the stream end).
            self.proc = subprocess.Popen(
                ["srt-live-transmit", "-a:no", "-q", f"srt://127.0.0.1:{self.port}?mode=listener",
                 "file://con"], stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # UDP: nothing to connect to; give it time to bind
        assert self.proc.poll() is None, f"srt-live-transmit exited with {self.proc.returncode}"
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
