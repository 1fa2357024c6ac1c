"""A fault-injecting HTTP reverse proxy for tests of object storage (S3 on moto).

    with FaultProxy(upstream_port) as proxy:
        proxy.fail(3, status=503)                   # the next 3 requests: 503 SlowDown
        proxy.fail(2, action="reset", method="PUT")  # the next 2 PUTs: connection reset
        ... point the client at proxy.endpoint ...
        assert proxy.injected["reset"] == 2

The proxy listens on 127.0.0.1 (a free port) and forwards every request verbatim (method,
path, query, headers, body; the response streamed back) to one upstream server, which must
be on 127.0.0.1 too: it never contacts any other address. A rule set by the test takes the
place of the upstream's answer for the first N requests it matches (by method and a regular
expression on the path and query):

- ``status``: an S3-style XML error (500 InternalError, 503 SlowDown, any other code);
- ``reset``: the request is read, then the connection is closed with a TCP reset (RST);
- ``cut``: the upstream's status line and headers go out, then half of the body, then a reset;
- ``delay``: no answer for ``delay`` seconds (beyond the client's read timeout), then close.

Rules are consumed in the order they were added; a request matches at most one rule. Counters
record every request seen and every fault injected. ``stop()`` (or leaving the ``with`` block)
closes the listening socket and wakes delayed handlers, so no thread outlives the test.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

Action = Literal["status", "reset", "cut", "delay"]
HOST = "127.0.0.1"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
_S3_CODES = {500: "InternalError", 502: "BadGateway", 503: "SlowDown", 504: "GatewayTimeout"}


@dataclass
class Rule:
    """Replace the answer to the next ``count`` matching requests (None: every one)."""

    action: Action
    count: int | None
    method: str | None = None
    path: re.Pattern[str] | None = None
    status: int = 503
    delay: float = 0.0
    applied: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.applied >= self.count:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass
class Seen:
    """What happened to one request."""

    method: str
    path: str
    outcome: str  # "forwarded" or the action injected


@dataclass
class FaultProxy:
    """A threaded reverse proxy on 127.0.0.1 in front of ``upstream_port`` on 127.0.0.1."""

    upstream_port: int
    upstream_host: str = HOST
    timeout: float = 60.0
    """Upper bound on any socket operation of the proxy itself (upstream and client)."""
    rules: list[Rule] = field(default_factory=list)
    log: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.upstream_host != HOST:
            raise ValueError(f"FaultProxy forwards to {HOST} only, not {self.upstream_host!r}")
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- rules and counters ------------------------------------------------------------

    def fail(
        self,
        count: int | None,
        *,
        action: Action = "status",
        status: int = 503,
        method: str | None = None,
        path: str | None = None,
        delay: float = 30.0,
    ) -> Rule:
        """Inject ``action`` into the next ``count`` requests matching ``method``/``path``
        (``count=None``: into every one, a permanent failure)."""
        rule = Rule(
            action=action,
            count=count,
            method=method,
            path=re.compile(path) if path is not None else None,
            status=status,
            delay=delay,
        )
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Forget every rule and every counter: forward everything from now on."""
        with self._lock:
            self.rules.clear()
            self.log.clear()

    @property
    def requests(self) -> Counter[str]:
        """Requests seen per method (and ``"total"``)."""
        with self._lock:
            out = Counter(s.method for s in self.log)
            out["total"] = len(self.log)
        return out

    @property
    def injected(self) -> Counter[str]:
        """Faults injected per action (and ``"total"``)."""
        with self._lock:
            out = Counter(s.outcome for s in self.log if s.outcome != "forwarded")
            out["total"] = sum(out.values())
        return out

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start the proxy first"
        return f"http://{HOST}:{self._server.server_address[1]}"

    def _choose(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.applied += 1
                    return rule
        return None

    def _record(self, method: str, path: str, outcome: str) -> None:
        with self._lock:
            self.log.append(Seen(method, path, outcome))

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer((HOST, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.owner.timeout)

    def _body(self) -> bytes:
        """The request body exactly as sent (chunked framing included)."""
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return b""
        raw = bytearray()
        while True:
            line = self.rfile.readline()
            raw += line
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = self.rfile.readline()
                    raw += trailer
                    if trailer in (b"\r\n", b"\n", b""):
                        return bytes(raw)
            raw += self.rfile.read(size + 2)

    def _reset(self) -> None:
        """Close the client connection with a TCP RST instead of an orderly FIN."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _s3_error(self, status: int) -> None:
        code = _S3_CODES.get(status, "InternalError")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>injected by the test proxy</Message>"
            f"<RequestId>faultproxy</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        method, path = self.command, self.path
        body = self._body()
        rule = self.owner._choose(method, path)
        if rule is None:
            self.owner._record(method, path, "forwarded")
            self._forward(body)
            return
        self.owner._record(method, path, rule.action)
        if rule.action == "status":
            self._s3_error(rule.status)
        elif rule.action == "reset":
            self._reset()
        elif rule.action == "delay":
            self.owner._stopped.wait(rule.delay)
            self.close_connection = True
        elif rule.action == "cut":
            self._forward(body, cut=True)
        else:  # pragma: no cover
            raise AssertionError(rule.action)

    def _forward(self, body: bytes, *, cut: bool = False) -> None:
        owner = self.owner
        upstream = http.client.HTTPConnection(
            owner.upstream_host, owner.upstream_port, timeout=owner.timeout
        )
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    upstream.putheader(name, value)
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            chunked = "chunked" in (response.getheader("Transfer-Encoding") or "").lower()
            length = response.getheader("Content-Length")
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            if not chunked and length is None and self.command != "HEAD":
                self.send_header("Connection", "close")  # the body ends when the socket does
                self.close_connection = True
            self.end_headers()
            if self.command == "HEAD":
                return
            budget = int(length) // 2 if cut and length is not None else None
            while True:
                piece = response.read1(65536)
                if not piece:
                    break
                if budget is not None:
                    piece = piece[:budget]
                    budget -= len(piece)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                if budget is not None and budget <= 0:
                    break
            if cut:
                self.wfile.flush()
                self._reset()
                return
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
