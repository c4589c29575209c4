"""The public API's front door: the checks every request to it passes before a route sees it, and its log.

In order: the Host header must name this server (a DNS-rebinding page in a browser sends its own domain name,
which resolves here but is not one of our names);
CORS headers only for origins the user listed; a POST must be JSON (a browser cannot send that across origins
without a preflight, which fails with no CORS, so a web page cannot even start a generation); the API key, when
set, on every route. Each request is then reported (time, client, route, status, tokens, duration).
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localai_app.engine.server import error_response

Reporter = Callable[[dict[str, Any]], None]


def allowed_host_names() -> frozenset[str]:
    """Names a client may put in Host besides an IP address: localhost and this machine's own names.

    An IP address is always accepted: DNS rebinding needs a domain name the attacker controls, resolved to this
    machine, and that name is what the browser then sends.
    """
    hostname = socket.gethostname()
    return frozenset(name.lower() for name in ("localhost", hostname, socket.getfqdn(), f"{hostname}.local") if name)


def host_name(header: str) -> str:
    """The name part of a Host header: `example.com:8765` → `example.com`, `[::1]:8765` → `::1`."""
    try:
        return (urlsplit(f"//{header}").hostname or "").lower()
    except ValueError:
        return ""


def public_app(
    api: ASGIApp,
    *,
    api_key: str | None,
    allowed_origins: Iterable[str],
    report: Reporter,
) -> ASGIApp:
    guarded: ASGIApp = _Guard(api, api_key)
    origins = list(allowed_origins)
    if origins:
        guarded = CORSMiddleware(
            guarded,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    return _RequestLog(_HostCheck(guarded, allowed_host_names()), report)


class ByListener:
    """One server, two listeners: requests that came in on the public port get the public app."""

    def __init__(self, internal: ASGIApp, public: ASGIApp, public_port: int) -> None:
        self.internal, self.public, self.public_port = internal, public, public_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        app = self.public if server is not None and server[1] == self.public_port else self.internal
        await app(scope, receive, send)


class _HostCheck:
    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host_name(given)
            if name not in self.allowed and not _is_ip_address(name):
                message = f"this server does not answer to the name {given!r}"
                await error_response(403, message, "permission_error")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class _Guard:
    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if self.expected is not None and not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
                message = "missing or wrong API key: send it as 'Authorization: Bearer KEY'"
                response = error_response(401, message, "authentication_error", {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
            content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if scope["method"] == "POST" and content_type != b"application/json":
                await error_response(415, "send the request body as application/json")(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _RequestLog:
    def __init__(self, app: ASGIApp, report: Reporter) -> None:
        self.app = app
        self.report = report

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived, started = time.time(), time.perf_counter()
        status = 500  # what the client sees if the app fails before answering
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            prompt_tokens, completion_tokens = state.get("usage", (0, 0))
            client = scope.get("client") or ("", 0)
            self.report(
                {
                    "time": arrived,
                    "client": str(client[0]),
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                }
            )
