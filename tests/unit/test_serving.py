"""The local API's options, the secrets file, the queue and the public listener's front door."""

from __future__ import annotations

import json
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from localai_app.core.credentials import Credentials
from localai_app.core.errors import AppError
from localai_app.core.serving import RequestRecord, ServeOptions, new_api_key, snippets
from localai_app.engine.gateway import public_app
from localai_app.engine.turns import API, APP, QueueFullError, Turns

KEY = "sk-local-0123456789abcdef"


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (ServeOptions(host="0.0.0.0"), "set an API key"),
        (ServeOptions(host="192.168.1.20"), "set an API key"),
        (ServeOptions(port=0), "not a port number"),
        (ServeOptions(port=70000), "not a port number"),
        (ServeOptions(host="my laptop"), "not an IP address"),
        (ServeOptions(api_key="short"), "at least 16 characters"),
        (ServeOptions(allowed_origins=("*",)), "not an origin"),
        (ServeOptions(allowed_origins=("https://example.com/app",)), "not an origin"),
        (ServeOptions(allowed_origins=("example.com",)), "not an origin"),
        (ServeOptions(max_queue=-1), "queue limit"),
    ],
)
def test_unsafe_or_malformed_options_are_refused_with_a_sentence(options: ServeOptions, complaint: str) -> None:
    with pytest.raises(AppError, match=complaint):
        options.check()


def test_loopback_needs_no_key_and_any_other_address_works_with_one() -> None:
    assert not ServeOptions().check().exposed
    assert not ServeOptions(host="localhost").check().exposed
    exposed = ServeOptions(host="0.0.0.0", api_key=new_api_key(), allowed_origins=("https://a.example:8443",))
    assert exposed.check().exposed
    assert exposed.base_url == "http://127.0.0.1:8765/v1"  # a wildcard is reached through loopback from here
    assert ServeOptions(host="::1", port=9000).base_url == "http://[::1]:9000/v1"


def test_the_key_reaches_the_engine_only_through_the_environment() -> None:
    arguments = ServeOptions(host="0.0.0.0", api_key=KEY, allowed_origins=("https://a.example",)).engine_arguments()
    assert KEY not in " ".join(arguments)
    assert arguments[arguments.index("--allowed-origin") + 1] == "https://a.example"


def test_snippets_name_the_model_address_and_key() -> None:
    found = snippets("http://127.0.0.1:8765/v1", KEY, "tiny-chat")
    assert set(found) == {"curl", "Python", "JavaScript"}
    for text in found.values():
        assert "tiny-chat" in text and "http://127.0.0.1:8765/v1" in text and KEY in text
    assert "Authorization" not in snippets("http://127.0.0.1:8765/v1", None, "tiny")["curl"]


def test_a_request_record_reads_back_from_the_engine_report_and_prints_one_line() -> None:
    record = RequestRecord.from_json(
        {
            "time": 0,
            "client": "10.0.0.2",
            "method": "POST",
            "path": "/v1/chat/completions",
            "status": 200,
            "prompt_tokens": 12,
            "completion_tokens": 30,
            "duration_ms": 812.4,
        }
    )
    assert "10.0.0.2  POST /v1/chat/completions  200  12+30 tokens  812 ms" in record.line()


def test_credentials_are_readable_by_the_user_only_and_can_be_forgotten(tmp_path: Path) -> None:
    credentials = Credentials(tmp_path)
    credentials.set("local-api-key", KEY)
    credentials.set("remote:lab", "other")
    assert stat.S_IMODE(credentials.path.stat().st_mode) == 0o600
    assert Credentials(tmp_path).get("local-api-key") == KEY
    credentials.set("local-api-key", None)
    assert credentials.get("local-api-key") is None and credentials.get("remote:lab") == "other"
    credentials.path.write_text("{not json", encoding="utf-8")
    assert credentials.get("remote:lab") is None  # a damaged file reads as empty instead of stopping the app


def test_the_apps_own_requests_go_before_waiting_api_requests() -> None:
    turns = Turns(max_waiting_api=5)
    never = threading.Event()
    generating = turns.admit(API)
    assert turns.wait(generating, never)
    order: list[str] = []
    waiters = []
    for name, priority in (("api-1", API), ("api-2", API), ("app", APP)):
        ticket = turns.admit(priority)

        def take_turn(ticket: Any = ticket, name: str = name) -> None:
            assert turns.wait(ticket, never)
            order.append(name)
            turns.done(ticket)

        waiters.append(threading.Thread(target=take_turn))
    for waiter in waiters:
        waiter.start()
    time.sleep(0.3)  # all three are waiting now
    turns.done(generating)
    for waiter in waiters:
        waiter.join(timeout=5)
    assert order == ["app", "api-1", "api-2"]


def test_api_requests_past_the_limit_are_refused_with_a_retry_time_but_the_apps_never_are() -> None:
    turns = Turns(max_waiting_api=1)
    assert turns.wait(turns.admit(API), threading.Event())
    waiting = turns.admit(API)
    with pytest.raises(QueueFullError) as refused:
        turns.admit(API)
    assert refused.value.retry_after >= 1
    turns.admit(APP)
    cancelled = threading.Event()
    cancelled.set()
    assert not turns.wait(waiting, cancelled)  # a client that left gives its place up...
    turns.admit(API)  # ...so the next one fits


def test_retry_after_comes_from_measured_durations() -> None:
    turns = Turns(max_waiting_api=0)
    never = threading.Event()
    first = turns.admit(API)
    assert turns.wait(first, never)
    with pytest.raises(QueueFullError) as guessed:
        turns.admit(API)
    time.sleep(0.05)
    turns.done(first)
    assert turns.wait(turns.admit(API), never)
    with pytest.raises(QueueFullError) as measured:
        turns.admit(API)
    assert guessed.value.retry_after == 10 and measured.value.retry_after == 1


def _echo_app() -> Starlette:
    async def echo(request: Request) -> Response:
        request.state.usage = (3, 4)
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/v1/models", echo, methods=["GET"]), Route("/v1/chat", echo, methods=["POST"])])


def _front_door(api_key: str | None, origins: tuple[str, ...] = ()) -> tuple[TestClient, list[dict[str, Any]]]:
    reports: list[dict[str, Any]] = []
    app = public_app(_echo_app(), api_key=api_key, allowed_origins=origins, report=reports.append)
    return TestClient(app, base_url="http://127.0.0.1:8765"), reports


def test_every_route_needs_the_key_when_one_is_set() -> None:
    client, reports = _front_door(KEY)
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong-key-wrong-key"}).status_code == 401
    assert client.get("/nowhere").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert [report["status"] for report in reports] == [401, 401, 401, 200]
    assert reports[-1]["prompt_tokens"] == 3 and reports[-1]["completion_tokens"] == 4


def test_a_foreign_host_name_is_refused_but_addresses_and_localhost_are_served() -> None:
    client, _ = _front_door(None)
    refused = client.get("/v1/models", headers={"Host": "attacker.example:8765"})
    assert refused.status_code == 403 and "attacker.example" in refused.json()["error"]["message"]
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "192.168.1.20:8765", "LOCALHOST"):
        assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host


def test_a_post_that_is_not_json_never_reaches_a_route() -> None:
    client, _ = _front_door(None)
    # text/plain is what a web page may send across origins without asking first.
    plain = client.post("/v1/chat", content=json.dumps({"messages": []}), headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert client.post("/v1/chat", json={"messages": []}).status_code == 200


def test_no_cors_headers_unless_the_origin_is_listed() -> None:
    closed, _ = _front_door(None)
    foreign = {"Origin": "https://attacker.example"}
    assert "access-control-allow-origin" not in closed.get("/v1/models", headers=foreign).headers
    preflight = {**foreign, "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in closed.options("/v1/chat", headers=preflight).headers

    opened, _ = _front_door(KEY, ("https://notebook.example",))
    listed = {"Origin": "https://notebook.example", "Access-Control-Request-Method": "POST"}
    answer = opened.options("/v1/chat", headers={**listed, "Access-Control-Request-Headers": "authorization"})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "https://notebook.example"
    assert "access-control-allow-origin" not in opened.options("/v1/chat", headers=preflight).headers
