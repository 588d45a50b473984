"""Feeding a container its stdin: the libpod attach protocol, which podman-py does not implement.

The container is attached over a raw HTTP upgrade on the service's socket
before it starts; what it prints comes back multiplexed in 8-byte-header frames.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Iterator

from ..errors import EngineError

API = "/v4.0.0/libpod"


class AttachedStream:
    """The upgraded connection; its first bytes may already have been read with the HTTP head."""

    def __init__(self, sock: socket.socket, leftover: bytes):
        self.sock, self.leftover = sock, leftover

    def __enter__(self) -> "AttachedStream":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def _recv(self, size: int) -> bytes:
        if self.leftover:
            data, self.leftover = self.leftover[:size], self.leftover[size:]
            return data
        return self.sock.recv(size)

    def _recv_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._recv(size - len(data))
            if not chunk:
                return data
            data += chunk
        return data

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Demultiplex: header (stream, 0, 0, 0, big-endian size), then the payload."""
        while True:
            header = self._recv_exact(8)
            if len(header) < 8:
                return
            fd, size = header[0], struct.unpack(">I", header[4:])[0]
            yield fd, self._recv_exact(size)


def attach(socket_path: Path, container_id: str) -> AttachedStream:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(socket_path))
    sock.sendall((f"POST {API}/containers/{container_id}/attach?stdin=true&stdout=true&stderr=true&stream=true "
                  "HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            sock.close()
            raise EngineError(f"podman closed the attach connection of container {container_id}")
        head += data
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 101 " not in status_line and " 200 " not in status_line:
        reason = _refusal(sock, head)
        sock.close()
        raise EngineError(f"cannot attach to container {container_id}: {status_line}: {reason}")
    return AttachedStream(sock, head.split(b"\r\n\r\n", 1)[1])


def _refusal(sock: socket.socket, head: bytes) -> str:
    """The message of a refused attach: podman prepares the container for it, so a container that cannot
    start (runc's error) is refused here, with the cause only in the JSON body."""
    headers, body = head.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":", 1)[1]) for line in headers.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), 0)
    sock.settimeout(5)
    try:
        while len(body) < length and (data := sock.recv(length - len(body))):
            body += data
    except OSError:
        pass
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip() or "no reason given"
