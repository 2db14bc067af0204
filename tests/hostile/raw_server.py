"""A loopback HTTP server that misbehaves at the byte level, for what ``responses`` cannot fake.

Each connection is answered by a *script*: a function that writes raw bytes to the socket
(or stalls, or hangs up). Real sockets, real ``requests``, real read timeouts.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

Script = Callable[[socket.socket], None]


def _head(status: str = "200 OK", content_type: str = "application/json", length: int | None = None, extra: str = "") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def truncated(body: bytes, content_type: str = "application/json") -> Script:
    """Declares the whole body, sends half of it, hangs up."""
    def script(conn: socket.socket) -> None:
        conn.sendall(_head(content_type=content_type, length=len(body)) + body[: len(body) // 2])
    return script


def broken_chunks(body: bytes, content_type: str = "application/json") -> Script:
    """Chunked encoding whose last chunk never comes."""
    def script(conn: socket.socket) -> None:
        head = _head(content_type=content_type, extra="Transfer-Encoding: chunked\r\n")
        conn.sendall(head + f"{len(body):x}\r\n".encode() + body[: len(body) // 2])
    return script


def stall_after_headers(seconds: float, content_type: str = "application/json") -> Script:
    def script(conn: socket.socket) -> None:
        conn.sendall(_head(content_type=content_type, length=1000))
        time.sleep(seconds)
    return script


def stall_before_anything(seconds: float) -> Script:
    def script(conn: socket.socket) -> None:
        time.sleep(seconds)
    return script


def drip(body: bytes, every: float, content_type: str = "application/json") -> Script:
    """One byte at a time, each within the read timeout: only a total deadline stops it."""
    def script(conn: socket.socket) -> None:
        conn.sendall(_head(content_type=content_type, length=len(body)))
        for i in range(len(body)):
            conn.sendall(body[i : i + 1])
            time.sleep(every)
    return script


def hang_up(conn: socket.socket) -> None:
    """Reads the request and closes without a byte."""


def garbage(conn: socket.socket) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 not http at all\r\n\r\n")


def huge_declared(content_type: str = "application/json") -> Script:
    """Declares 10 GB and starts sending."""
    def script(conn: socket.socket) -> None:
        conn.sendall(_head(content_type=content_type, length=10 * 1024**3) + b"[" * 4096)
    return script


class RawServer:
    """Serves ``script`` to every connection until stopped."""

    def __init__(self) -> None:
        self.script: Script = hang_up
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="raw-hostile-server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            self.script(conn)
        except OSError:
            pass
        finally:
            conn.close()
