"""Real servers for the egress attack tests, all on this machine's loopback.

- `HitServer`: a refused target. It records every TCP connection (or UDP datagram) it gets, so
  a test can assert from the target's side that nothing reached it.
- `PageServer`: the allowed origin (127.0.0.1), serving the attack pages and redirects and
  recording which paths were fetched.
- `RebindingDns`: a DNS server on a loopback UDP port whose answer for a name changes.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import dnslib


class HitServer:
    """Accepts on host:port and records each connection's first bytes (UDP: each datagram)."""

    def __init__(self, host: str, port: int = 0, udp: bool = False) -> None:
        self.hits: list[bytes] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        hits = self.hits

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                if udp:
                    hits.append(self.request[0][:200])
                    return
                self.request.settimeout(2)
                try:
                    data = self.request.recv(4096)
                except OSError:
                    data = b""
                hits.append(data[:200] or b"<connected>")
                try:
                    self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                                         b"Connection: close\r\n\r\nhit")
                except OSError:
                    pass

        base = socketserver.ThreadingUDPServer if udp else socketserver.ThreadingTCPServer

        class Server(base):  # type: ignore[valid-type, misc]
            address_family = family
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server((host, port), Handler)
        self.host = host
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PageServer:
    """The allowed origin. `pages` maps a path to HTML; `/redirect?to=URL[&code=307]` answers
    a redirect (302 unless told) to URL; GET and POST alike;
    every response closes its connection (so each request is a new connection through the
    proxy). `on_request(path)` runs before each answer."""

    def __init__(self, pages: dict[str, str], host: str = "127.0.0.1", port: int = 0,
                 on_request: Callable[[str], None] | None = None) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                url = urlsplit(self.path)
                owner.paths.append(url.path)
                if on_request is not None:
                    on_request(url.path)
                if url.path == "/redirect":
                    query = parse_qs(url.query)
                    self._send(int(query.get("code", ["302"])[0]), b"", location=query["to"][0])
                elif url.path in pages:
                    self._send(200, pages[url.path].encode(), ctype="text/html")
                else:
                    self._send(200, b"ok")

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def _send(self, code: int, body: bytes, ctype: str = "text/plain",
                      location: str | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.send_header("Cache-Control", "no-store")
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, path: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while path not in self.paths:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RebindingDns:
    """Answers A queries for `name` with `first` until `rebind()` is called, then with
    `after`; AAAA gets no answer, other names NXDOMAIN. Records what it answered."""

    def __init__(self, name: str, first: str, after: str) -> None:
        self.name = name.rstrip(".") + "."
        self.first, self.after = first, after
        self.rebound = False
        self.answers: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def rebind(self) -> None:
        self.rebound = True

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(2048)
            except OSError:
                continue
            try:
                request = dnslib.DNSRecord.parse(data)
            except dnslib.DNSError:
                continue
            reply = request.reply()
            qname, qtype = str(request.q.qname).lower(), dnslib.QTYPE[request.q.qtype]
            if qname != self.name:
                reply.header.rcode = dnslib.RCODE.NXDOMAIN
            elif qtype == "A":
                address = self.after if self.rebound else self.first
                self.answers.append(address)
                reply.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.A,
                                           rdata=dnslib.A(address), ttl=0))
            self.sock.sendto(reply.pack(), peer)

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()
