"""Python gRPC's own cost per call, by server model: ``grpc.aio`` (what flywheel runs)
against the synchronous ``grpc.server`` on a thread pool.

The servicer does nothing (``GetActionResult`` answers one fixed ActionResult), so what is
measured is the framework's floor: the server process's CPU time per call (from
/proc/PID/stat, so a client sharing the cores does not blur it) and calls per second, on 1
and 16 concurrent callers. Rounds alternate the order of the models.

    python -m bench.grpc_models [--calls N] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from flywheel.bazel.reapi import re_pb2
from flywheel.bazel.reapi_grpc import re_grpc
from tests.support.server import free_port

MODELS = ("aio", "sync")
CONCURRENCY = (1, 16)
_WARM_UP = 200


def _result() -> Any:
    result = re_pb2.ActionResult()
    result.output_files.add(path="out", digest=re_pb2.Digest(hash="a" * 64, size_bytes=10))
    return result


def serve(model: str, port: int) -> None:
    result = _result()
    if model == "sync":
        class Sync(re_grpc.ActionCacheServicer):  # type: ignore[misc]
            def GetActionResult(self, request: Any, context: Any) -> Any:
                return result

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        re_grpc.add_ActionCacheServicer_to_server(Sync(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        server.wait_for_termination()
        return

    import uvloop

    class Aio(re_grpc.ActionCacheServicer):  # type: ignore[misc]
        async def GetActionResult(self, request: Any, context: Any) -> Any:
            return result

    async def main() -> None:
        server = grpc.aio.server()
        re_grpc.add_ActionCacheServicer_to_server(Aio(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


async def _call(pid: int, port: int, calls: int, concurrency: int) -> tuple[float, float]:
    """Wall seconds and the server's CPU seconds for ``calls`` after a warm-up."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 60)   # the server has started
        stub = re_grpc.ActionCacheStub(channel)
        request = re_pb2.GetActionResultRequest(
            instance_name="main", action_digest=re_pb2.Digest(hash="b" * 64, size_bytes=1))

        async def caller(n: int) -> None:
            for _ in range(n):
                await stub.GetActionResult(request)

        await caller(_WARM_UP)
        cpu, start = _cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(caller(calls // concurrency) for _ in range(concurrency)))
        return time.perf_counter() - start, _cpu_seconds(pid) - cpu


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(model: str, concurrency: int, calls: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.grpc_models", "--serve", model,
                             "--port", str(port)], cwd=Path(__file__).parents[1])
    try:
        wall, cpu = asyncio.run(_call(proc.pid, port, calls, concurrency))
    finally:
        proc.kill()
        proc.wait()
    done = calls // concurrency * concurrency
    return {"calls_per_second": done / wall, "server_cpu_us_per_call": cpu / done * 1e6}


def run(calls: int, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {}
    for r in range(rounds):
        for model in MODELS if r % 2 == 0 else tuple(reversed(MODELS)):
            for concurrency in CONCURRENCY:
                figures = measure(model, concurrency, calls)
                samples.setdefault(f"{model}, {concurrency}", []).append(figures)
                print(f"[{r + 1}/{rounds}] {model:4} {concurrency:2} callers: "
                      f"{figures['calls_per_second']:7.0f} calls/s, server CPU "
                      f"{figures['server_cpu_us_per_call']:6.1f} µs/call", flush=True)
    return {key: {name: statistics.median(s[name] for s in runs) for name in runs[0]}
            for key, runs in samples.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--serve", choices=MODELS, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    medians = run(args.calls, args.rounds)
    print("median over rounds:")
    for key, figures in medians.items():
        print(f"  {key:9} callers: {figures['calls_per_second']:7.0f} calls/s, server CPU "
              f"{figures['server_cpu_us_per_call']:6.1f} µs/call")
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2) + "\n")


if __name__ == "__main__":
    main()
