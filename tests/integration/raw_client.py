"""A client on a plain socket, for tests that decide exactly when and how a client goes away."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

from tests.integration.stack import Stack


def open_request(stack: Stack, body: dict[str, Any], api_key: str = "test-key") -> socket.socket:
    """POST /v1/chat/completions with the key Stack.client() uses (the cache's tenant comes from
    it); the answer is left unread."""
    assert stack.gateway is not None
    sock = socket.create_connection(("127.0.0.1", stack.gateway.port), timeout=30)
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s" % (api_key.encode(), len(data), data))
    return sock


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a polite FIN: the server's next write fails."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_until(sock: socket.socket, marker: bytes, count: int = 1) -> bytes:
    received = b""
    while received.count(marker) < count:
        block = sock.recv(65536)
        assert block, received
        received += block
    return received


def assert_logged_no_error(stack: Stack) -> None:
    """No service of the stack logged a traceback or an unhandled error."""
    for log in [stack.logs / "gateway.log", *(router.log_path for router in stack.routers)]:
        text = log.read_text()
        assert "Traceback" not in text and "unhandled error" not in text, text[-3000:]
