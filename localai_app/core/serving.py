"""The local API other tools call: what the user chose (address, key, origins, queue) and what the app shows
about it (the address to paste, snippets, the request log). The engine process serves it (engine/gateway.py).

Safe by default, unlike servers that exposed thousands of models to the internet: off until turned on, bound to
loopback, a key required before any other address, no CORS unless origins are listed, Host checked.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from localai_app.core.errors import AppError

DEFAULT_PORT = 8765
DEFAULT_MAX_QUEUE = 8  # requests waiting behind the one generating; past it, 429 with Retry-After
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
API_KEY_VARIABLE = "LOCALAI_SERVE_KEY"  # how the key reaches the engine: never on a command line others can read
MIN_KEY_LENGTH = 16
API_KEY_CREDENTIAL = "local-api-key"


def new_api_key() -> str:
    return "sk-local-" + secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key: str | None = None
    allowed_origins: tuple[str, ...] = ()
    max_queue: int = DEFAULT_MAX_QUEUE

    @property
    def exposed(self) -> bool:
        """Other computers can reach it: the user chose this explicitly and a key is required."""
        return not is_loopback(self.host)

    def check(self) -> ServeOptions:
        """These options, or an AppError saying in one sentence what is wrong with them."""
        if not 0 < self.port < 65536:
            raise AppError(f"Port {self.port} is not a port number (1-65535).")
        if not 0 <= self.max_queue <= 1000:
            raise AppError("The queue limit must be between 0 and 1000 waiting requests.")
        if self.host != "localhost":
            try:
                ipaddress.ip_address(self.host)
            except ValueError:
                raise AppError(f"{self.host!r} is not an IP address this computer can listen on.") from None
        if self.exposed and not self.api_key:
            raise AppError(
                f"Serving on {self.host} lets other computers use the model: set an API key first "
                "(--api-key, or Generate in the Local API panel)."
            )
        if self.api_key is not None and len(self.api_key) < MIN_KEY_LENGTH:
            raise AppError(f"The API key must be at least {MIN_KEY_LENGTH} characters long.")
        for origin in self.allowed_origins:
            check_origin(origin)
        return self

    @property
    def display_host(self) -> str:
        """The host a client on this computer types: a wildcard bind is reached through loopback."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"[{host}]" if ":" in host else host

    @property
    def base_url(self) -> str:
        return f"http://{self.display_host}:{self.port}/v1"

    def engine_arguments(self) -> list[str]:
        """Command-line arguments for the engine; the key travels separately, in API_KEY_VARIABLE."""
        arguments = ["--serve-host", self.host, "--serve-port", str(self.port), "--max-queue", str(self.max_queue)]
        for origin in self.allowed_origins:
            arguments += ["--allowed-origin", origin]
        return arguments


def check_origin(origin: str) -> str:
    """A browser origin as CORS compares it (scheme://host[:port]); a wildcard is refused: list each site."""
    parts = urlsplit(origin)
    if origin == "*" or parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise AppError(f"{origin!r} is not an origin: write it as https://example.com (scheme, host, optional port).")
    return origin.rstrip("/")


@dataclass(frozen=True)
class RequestRecord:
    """One line of the request log the engine reports (stdout, after its handshake) and the panel shows."""

    time: float  # seconds since the epoch, when the request arrived
    client: str
    method: str
    path: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    duration_ms: float

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RequestRecord:
        return cls(
            time=float(document["time"]),
            client=str(document.get("client", "")),
            method=str(document["method"]),
            path=str(document["path"]),
            status=int(document["status"]),
            prompt_tokens=int(document.get("prompt_tokens", 0)),
            completion_tokens=int(document.get("completion_tokens", 0)),
            duration_ms=float(document.get("duration_ms", 0.0)),
        )

    def line(self) -> str:
        """One line of `localai-app serve`'s log."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        tokens = f"{self.prompt_tokens}+{self.completion_tokens} tokens" if self.prompt_tokens else "-"
        return f"{when}  {self.client}  {self.method} {self.path}  {self.status}  {tokens}  {self.duration_ms:.0f} ms"


def snippets(base_url: str, api_key: str | None, model: str, *, chat: bool = True) -> dict[str, str]:
    """Ready-to-paste calls for the loaded model: curl, Python `openai`, JavaScript `openai`. `chat=False` for a
    model without a chat template, which only completes text (a chat request would be refused)."""
    key = api_key or "not-needed"
    header = f' \\\n  -H "Authorization: Bearer {api_key}"' if api_key else ""
    if chat:
        route, method = "chat/completions", "chat.completions"
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Hello!"}]}
        python_input = 'messages=[{"role": "user", "content": "Hello!"}],'
        javascript_input = 'messages: [{ role: "user", content: "Hello!" }],'
        output = "reply.choices[0].message.content"
    else:
        route, method = "completions", "completions"
        body = {"model": model, "prompt": "Once upon a time", "max_tokens": 64}
        python_input = 'prompt="Once upon a time",\n    max_tokens=64,'
        javascript_input = 'prompt: "Once upon a time",\n  max_tokens: 64,'
        output = "reply.choices[0].text"
    curl = f"curl {base_url}/{route} \\\n  -H \"Content-Type: application/json\"{header} \\\n  -d '{json.dumps(body)}'"
    python = (
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base_url}", api_key="{key}")\n'
        f"reply = client.{method}.create(\n"
        f'    model="{model}",\n'
        f"    {python_input}\n"
        ")\n"
        f"print({output})"
    )
    javascript = (
        'import OpenAI from "openai";\n\n'
        f'const client = new OpenAI({{ baseURL: "{base_url}", apiKey: "{key}" }});\n'
        f"const reply = await client.{method}.create({{\n"
        f'  model: "{model}",\n'
        f"  {javascript_input}\n"
        "});\n"
        f"console.log({output});"
    )
    return {"curl": curl, "Python": python, "JavaScript": javascript}
