"""A stand-in for ``tailscale serve``: a reverse proxy that connects to the server from its
own loopback address (the one ``[auth] trusted-proxies`` names) and adds the identity
headers Tailscale adds, after dropping any a client sent. Responses stream through, so
server-sent events arrive as they are sent."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.header import Header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.github.threads import serving

PROXY_ADDRESS = "127.0.0.2"
IDENTITY = ("tailscale-user-login", "tailscale-user-name", "tailscale-user-profile-pic",
            "tailscale-funnel-request")
HOP = ("connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection")


@dataclass
class Tailnet:
    upstream_port: int
    login: str | None        # None: a Funnel request from the internet, no identity
    name: str | None = None
    url: str = ""


def _encoded(name: str) -> str:
    """Tailscale sends a non-ASCII display name RFC 2047-encoded."""
    try:
        name.encode("ascii")
        return name
    except UnicodeEncodeError:
        return Header(name, "utf-8").encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Proxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        tailnet = self.server.tailnet
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in IDENTITY and k.lower() not in HOP}
        if tailnet.login is None:
            headers["Tailscale-Funnel-Request"] = "?1"
        else:
            headers["Tailscale-User-Login"] = tailnet.login
            headers["Tailscale-User-Name"] = _encoded(tailnet.name or tailnet.login)
        upstream = http.client.HTTPConnection("127.0.0.1", tailnet.upstream_port, timeout=120,
                                              source_address=(PROXY_ADDRESS, 0))
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("connection", "close")
            self.end_headers()
            while chunk := response.read1(65536):
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, http.client.HTTPException, ValueError):
            pass   # the browser left (a live page it navigated away from)
        finally:
            upstream.close()
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tailnet: Tailnet) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tailnet = tailnet


@contextmanager
def tailnet_front(tailnet: Tailnet) -> Iterator[Tailnet]:
    with serving(_Proxy(tailnet)) as port:
        # A host name, not an address: passkeys need one (WebAuthn's relying party).
        tailnet.url = f"http://localhost:{port}"
        yield tailnet
