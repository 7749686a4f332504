"""Just enough HTTP/1.1 for the fake upstream: read a request, write heads and chunks."""

from __future__ import annotations

import asyncio
import http
import socket
import struct
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

MAX_HEAD = 64 * 1024
LAST_CHUNK = b"0\r\n\r\n"


class BadRequest(Exception):
    pass


@dataclass(slots=True)
class RawRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    keep_alive: bool


async def read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    """The next request on a connection, or None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("connection closed mid-head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise BadRequest(f"bad request line {lines[0]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await _read_body(reader, headers)
    url = urlsplit(target)
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return RawRequest(method, url.path, dict(parse_qsl(url.query)), headers, body, keep_alive)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get("content-length") or 0)
    return await reader.readexactly(length) if length else b""


def head(status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = {529: "Site Overloaded"}.get(status, "Unknown")
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (never the empty, last chunk)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def abort_with_reset(writer: asyncio.StreamWriter) -> None:
    """Close the socket with SO_LINGER 0, so the peer gets a TCP RST."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def wait_for_eof(reader: asyncio.StreamReader) -> None:
    """Until the client closes its side (or resets it)."""
    try:
        while await reader.read(65536):
            pass
    except (ConnectionError, OSError):
        pass
