"""The engine's listening sockets, as uvicorn's asyncio server accepts connections on them."""

from __future__ import annotations

import asyncio
import socket

from localai_app.engine.__main__ import _listen


def test_accepted_connections_have_nagle_off() -> None:
    """With Nagle's algorithm on, a response written in two parts (headers, body) on a kept-alive connection waited
    about 40 ms for the client's delayed ACK: every glass-box call and step cost that much more."""
    listener = _listen("127.0.0.1", 0)

    async def accept_one() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connection(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=listener)
        async with server:
            _reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            nodelay = await asyncio.wait_for(accepted, timeout=10)
            writer.close()
            return nodelay

    assert asyncio.run(accept_one()) != 0
