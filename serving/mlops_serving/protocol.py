"""uvicorn's httptools protocol, with each response's status line, headers and body in one write.

uvicorn writes a response's header block when the app sends ``http.response.start`` and the body
when it sends ``http.response.body``: two ``send`` calls on the socket. A server killed between them
(SIGKILL, the OOM killer, a container stopped without grace) leaves its peer a response with a
``Content-Length`` and no body. HAProxy has by then passed the headers on, so it cannot retry the
request on another server, and the client gets a broken response. Written once, the response is all
there or not there at all; a response not there is an empty response, which the router retries
(``retry-on empty-response``). One system call instead of two is also cheaper per request.

Only responses with a ``Content-Length`` are held back, and only until their first body bytes: a
chunked (streamed) response and the headers of a ``HEAD`` go out as before, and so does an interim
``100 Continue``. Should the app fail after the headers and before any body, nothing of the response
has left, and uvicorn closes the connection as it would have.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _HeadersWithBody:
    """A cycle's transport that holds the header block back and writes it with the body's first bytes."""

    __slots__ = ("_cycle", "_held", "_seen_headers", "_transport")

    def __init__(self, transport: Any, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._held: bytes | None = None
        self._seen_headers = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
            return
        cycle = self._cycle
        # uvicorn sets ``response_started`` just before it writes the header block; an interim
        # ``100 Continue`` is written before it, while the app still reads the request.
        if not self._seen_headers and cycle.response_started:
            self._seen_headers = True
            if cycle.chunked_encoding is False and cycle.scope["method"] != "HEAD":
                self._held = bytes(data)
                return
        self._transport.write(data)

    def close(self) -> None:
        self._held = None  # a response whose body never came is not sent at all
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` whose responses with a ``Content-Length`` leave in one write."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.transport, _HeadersWithBody):
            cycle.transport = _HeadersWithBody(cycle.transport, cycle)  # type: ignore[assignment]
