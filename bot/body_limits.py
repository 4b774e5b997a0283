"""Request bodies are capped at the server, per route, before a handler reads them.

A body whose declared ``Content-Length`` is over its route's cap is refused
with 413 without reading a byte of it; a body without one (chunked) is counted
as the handler reads it and refused with 413 as soon as it passes the cap.
Either way the server holds at most one cap's worth of it in memory, and
uvicorn closes the connection rather than read the rest.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised from ``receive`` when the body passes its cap; answered with 413."""


class BodyLimit:
    """ASGI middleware: ``cap_for(path)`` is the most bytes a request body to ``path`` may have."""

    def __init__(self, app: ASGIApp, cap_for: Callable[[str], int]) -> None:
        self.app = app
        self.cap_for = cap_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _too_large(scope, receive, send)
            return
        if declared is not None and declared < 0:
            await PlainTextResponse("bad request", status_code=400)(scope, receive, send)
            return
        counted = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal counted
            message = await receive()
            if message["type"] == "http.request":
                counted += len(message.get("body", b""))
                if counted > cap:
                    raise BodyTooLarge(f"{scope['path']}: body over {cap} bytes")
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:  # a handler that answered before reading all of it: nothing more to say
                return
            await _too_large(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    # Connection: close tells the client (and uvicorn) that the rest of the body will not be read.
    response = PlainTextResponse("request body too large", status_code=413, headers={"Connection": "close"})
    await response(scope, receive, send)
