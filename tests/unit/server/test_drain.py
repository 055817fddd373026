"""The pieces of a drain that need no server: the gate in front of the app, and the
readiness the supervisor shares with the workers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flywheel.server import readiness
from flywheel.server.drain import DrainGate


class Client:
    """Calls the gate as Granian would and keeps what it answers."""

    def __init__(self, gate: DrainGate) -> None:
        self.gate = gate
        self.sent: list[dict[str, Any]] = []

    async def request(self, path: str) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            self.sent.append(dict(message))

        await self.gate({"type": "http", "path": path}, receive, send)

    @property
    def statuses(self) -> list[int]:
        return [m["status"] for m in self.sent if m["type"] == "http.response.start"]

    def headers(self, index: int) -> dict[bytes, bytes]:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return dict(starts[index]["headers"])


class App:
    """Answers /slow with 200 once ``release`` is set, anything else at once; notes which
    requests ran and how many cleaned up."""

    def __init__(self, respond_first: bool = False) -> None:
        self.release = asyncio.Event()
        self.respond_first = respond_first
        self.paths: list[str] = []
        self.cleaned_up = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        try:
            if self.respond_first:
                await send({"type": "http.response.start", "status": 200, "headers": []})
            if scope["path"] == "/slow":
                await self.release.wait()
            if not self.respond_first:
                await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            self.cleaned_up += 1


def test_a_drain_waits_for_requests_in_flight_and_refuses_new_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness._this_process, "draining", False)

    async def scenario() -> tuple[App, Client, Client]:
        app = App()
        gate = DrainGate(app)
        running, later = Client(gate), Client(gate)
        request = asyncio.create_task(running.request("/slow"))
        await asyncio.sleep(0)
        drain = asyncio.create_task(gate.drain(timeout=30))
        await asyncio.sleep(0)
        assert readiness.not_ready_reason() == readiness.SHUTTING_DOWN
        for path in ("/main/nix-cache-info", "/readyz", "/healthz"):
            await later.request(path)
        assert not drain.done()
        app.release.set()
        await asyncio.wait_for(drain, 5)
        await request
        return app, running, later

    app, running, later = asyncio.run(scenario())
    assert running.statuses == [200]
    # The new request never reached the app; the probes did, and were answered by it.
    assert app.paths == ["/slow", "/readyz", "/healthz"]
    assert later.statuses[0] == 503
    assert later.headers(0)[b"connection"] == b"close"
    assert later.headers(0)[b"retry-after"] == b"1"
    assert app.cleaned_up == 3


@pytest.mark.parametrize("respond_first", [False, True])
def test_requests_still_running_at_the_drain_timeout_are_aborted(
        monkeypatch: pytest.MonkeyPatch, respond_first: bool) -> None:
    monkeypatch.setattr(readiness._this_process, "draining", False)

    async def scenario() -> tuple[App, Client]:
        app = App(respond_first=respond_first)
        gate = DrainGate(app)
        client = Client(gate)
        request = asyncio.create_task(client.request("/slow"))
        await asyncio.sleep(0)
        await asyncio.wait_for(gate.drain(timeout=0.05), 5)
        await asyncio.wait_for(request, 5)  # ends normally: the gate took the cancellation
        return app, client

    app, client = asyncio.run(scenario())
    assert app.cleaned_up == 1
    # Answered 503 for the app, unless the app's own answer had begun.
    assert client.statuses == ([200] if respond_first else [503])


def test_lifespan_passes_through_a_draining_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness._this_process, "draining", False)
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def scenario() -> None:
        gate = DrainGate(app)
        await gate.drain(timeout=0)
        await gate({"type": "lifespan"}, None, None)  # type: ignore[arg-type]

    asyncio.run(scenario())
    assert seen == ["lifespan"]


def test_readiness_is_shared_through_a_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "readiness.json"
    monkeypatch.setattr(readiness._this_process, "draining", False)
    monkeypatch.setattr(readiness._this_process, "file", path)
    assert readiness.not_ready_reason() == "starting"  # nothing published yet
    readiness.publish(path, readiness.Readiness(False, "gRPC listener down, restarting"))
    assert readiness.not_ready_reason() == "gRPC listener down, restarting"
    readiness.publish(path, readiness.Readiness(True))
    assert readiness.not_ready_reason() is None
    assert [p.name for p in tmp_path.iterdir()] == ["readiness.json"]
    readiness.begin_draining()
    assert readiness.not_ready_reason() == readiness.SHUTTING_DOWN


def test_an_unsupervised_app_has_only_its_own_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness._this_process, "draining", False)
    monkeypatch.setattr(readiness._this_process, "file", None)
    assert readiness.not_ready_reason() is None
