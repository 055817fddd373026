"""TLS for ``flywheel serve``: ``--tls-cert``/``--tls-key`` alone are handed to Granian;
with ``--client-ca`` as well, a front in each HTTP worker terminates TLS itself, requires a
client certificate signed by that CA, and passes the connection on to Granian on a private
loopback port. Granian cannot tell the app which certificate a client presented, so the
front records, per connection it opens to Granian, the subject and the real client address;
the app wrapper finds them by the connection's port and puts them in the ASGI scope, where
nothing a client sends can reach (``flywheel.client_certificate``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from cryptography import x509

from flywheel.app.settings import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]
CHUNK = 1 << 16
SCOPE_KEY = "flywheel.client_certificate"


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def subject_of(der: bytes) -> str:
    """A certificate's subject as nginx's ``$ssl_client_s_dn`` writes it (RFC 4514)."""
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):  # the other side is gone already
            writer.close()


class ClientCertificateFront:
    def __init__(self, settings: Settings) -> None:
        assert settings.tls_cert and settings.tls_key and settings.client_ca
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(settings.tls_cert, settings.tls_key)
        self._context.load_verify_locations(cafile=str(settings.client_ca))
        self._context.verify_mode = ssl.CERT_REQUIRED
        self._public = settings.host_port
        self.inner = ("127.0.0.1", _free_loopback_port())
        # Granian's view of a connection (the front's local port) -> (subject, client).
        self._connections: dict[int, tuple[str, tuple[str, int]]] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = self._public
        self._server = await asyncio.start_server(
            self._connection, host, port, ssl=self._context, reuse_port=True, backlog=1024)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if der is None:    # CERT_REQUIRED: the handshake fails before this, kept as a guard
            writer.close()
            return
        peer = writer.get_extra_info("peername")
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.inner)
        except OSError as e:
            log.warning("TLS front: cannot reach the HTTP server: %s", e)
            writer.close()
            return
        port = int(up_writer.get_extra_info("sockname")[1])
        self._connections[port] = (subject_of(der), (str(peer[0]), int(peer[1])))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._connections.pop(port, None)

    def wrap(self, app: App) -> App:
        async def identified(scope: Scope, receive: Any, send: Any) -> None:
            if scope["type"] in ("http", "websocket"):
                client = scope.get("client")
                found = self._connections.get(int(client[1])) if client else None
                if found is None:
                    # Not through the front (a local process on the private port).
                    await send({"type": "http.response.start", "status": 421,
                                "headers": [(b"content-type", b"text/plain")]})
                    await send({"type": "http.response.body",
                                "body": b"connect with TLS and a client certificate\n"})
                    return
                scope = {**scope, SCOPE_KEY: found[0], "client": found[1], "scheme": "https"}
            await app(scope, receive, send)

        return identified


class Listening:
    """How a worker listens: plain HTTP, TLS by Granian, or TLS with client certificates
    through the front."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.front = ClientCertificateFront(settings) if settings.client_ca else None

    def granian(self) -> dict[str, Any]:
        """Granian's address and TLS options."""
        if self.front is not None:
            host, port = self.front.inner
            return {"address": host, "port": port}
        host, port = self._settings.host_port
        tls = {"ssl_cert": Path(self._settings.tls_cert), "ssl_key": Path(self._settings.tls_key)
               } if self._settings.tls_cert and self._settings.tls_key else {}
        return {"address": host, "port": port, **tls}

    def wrap(self, app: App) -> App:
        return self.front.wrap(app) if self.front is not None else app

    async def start(self) -> None:
        if self.front is not None:
            await self.front.start()

    def close(self) -> None:
        if self.front is not None:
            self.front.close()
