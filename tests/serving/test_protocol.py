"""The server's HTTP protocol: a response with a Content-Length leaves in one write.

Killed between two writes, a server leaves its peer the headers of a response without its body, which
the router cannot retry. These tests drive uvicorn's protocol over a transport that records every
write, beside uvicorn's stock protocol, which writes the headers and the body apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from mlops_serving.protocol import OneWriteHttpToolsProtocol

App = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def exchange(
    protocol_class: type[HttpToolsProtocol],
    app: App,
    request: bytes,
    during: Callable[[RecordingTransport], Awaitable[None]] | None = None,
) -> RecordingTransport:
    """Feed ``request`` to a fresh connection, run ``during`` while the app runs, return what was written."""
    config = Config(app=app, http=protocol_class, lifespan="off", log_level="critical", access_log=False)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    if during is not None:
        await during(transport)
    for _ in range(50):
        await asyncio.sleep(0)
    await asyncio.gather(*protocol.tasks, return_exceptions=True)
    protocol.connection_lost(None)
    return transport


def fixed_body_app(body: bytes = b'{"predictions":[0.25]}') -> App:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


GET = b"GET /predict HTTP/1.1\r\nHost: x\r\n\r\n"


def test_headers_and_body_leave_in_one_write_where_uvicorn_writes_them_apart() -> None:
    ours = asyncio.run(exchange(OneWriteHttpToolsProtocol, fixed_body_app(), GET))
    stock = asyncio.run(exchange(HttpToolsProtocol, fixed_body_app(), GET))
    assert len(stock.writes) == 2 and stock.writes[0].endswith(b"\r\n\r\n")  # the failure this module removes
    assert len(ours.writes) == 1
    assert ours.writes[0] == b"".join(stock.writes)
    assert ours.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and ours.writes[0].endswith(b'\r\n\r\n{"predictions":[0.25]}')


def test_pipelined_requests_each_get_one_whole_write_in_order() -> None:
    bodies = iter([b"first", b"second!"])

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        body = next(bodies)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    transport = asyncio.run(exchange(OneWriteHttpToolsProtocol, app, GET + GET))
    assert [w.split(b"\r\n\r\n", 1)[1] for w in transport.writes] == [b"first", b"second!"]


def test_a_body_sent_in_parts_follows_the_headers_first_part() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    transport = asyncio.run(exchange(OneWriteHttpToolsProtocol, app, GET))
    assert len(transport.writes) == 2
    assert transport.writes[0].endswith(b"\r\n\r\nabc") and transport.writes[1] == b"def"


def test_a_head_response_sends_its_headers() -> None:
    transport = asyncio.run(exchange(OneWriteHttpToolsProtocol, fixed_body_app(), b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes[0].endswith(b"\r\n\r\n")


def test_a_streamed_response_sends_its_headers_before_its_first_chunk() -> None:
    go = asyncio.Event()
    before_first_chunk: list[bytes] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await go.wait()
        await send({"type": "http.response.body", "body": b"chunk"})

    async def during(transport: RecordingTransport) -> None:
        for _ in range(20):
            await asyncio.sleep(0)
        before_first_chunk.extend(transport.writes)
        go.set()

    transport = asyncio.run(exchange(OneWriteHttpToolsProtocol, app, GET, during))
    (headers,) = before_first_chunk
    assert b"transfer-encoding: chunked" in headers and headers.endswith(b"\r\n\r\n")
    assert transport.writes == [headers, b"5\r\nchunk\r\n0\r\n\r\n"]


def test_100_continue_is_written_when_the_app_reads_the_body() -> None:
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    while_reading: list[bytes] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        reading = asyncio.ensure_future(receive())
        await asyncio.sleep(0.01)
        reading.cancel()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def during(transport: RecordingTransport) -> None:
        await asyncio.sleep(0.005)
        while_reading.extend(transport.writes)

    transport = asyncio.run(exchange(OneWriteHttpToolsProtocol, app, request, during))
    assert while_reading == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert len(transport.writes) == 2 and transport.writes[1].endswith(b"\r\n\r\nok")


def test_an_app_failing_after_its_headers_sends_nothing_and_closes() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        raise RuntimeError("model crashed")

    ours = asyncio.run(exchange(OneWriteHttpToolsProtocol, app, GET))
    stock = asyncio.run(exchange(HttpToolsProtocol, app, GET))
    assert ours.writes == [] and ours.closed  # an empty response: the router retries it elsewhere
    assert len(stock.writes) == 1 and stock.closed  # headers promising 10 bytes that never come


def test_the_server_runs_uvicorn_with_this_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from mlops_serving import __main__ as entry

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    monkeypatch.setenv("MLOPS_SERVING_WORKERS", "1")
    assert entry.main() == 0
    assert calls and calls[0]["http"] is OneWriteHttpToolsProtocol
