"""Running a push plan: N uploads at a time, each path only once everything it references
is on the server, failed attempts retried with backoff, and a summary at the end."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol

from flywheel.api.upload import UploadPathResult
from flywheel.client.api import Api
from flywheel.client.errors import ApiError, ClientError
from flywheel.client.nixstore import LocalStore, PathInfo
from flywheel.client.plan import PushPlan, plan_push
from flywheel.client.summary import PushSummary
from flywheel.client.upload import Cancelled, Progress, upload_one

ATTEMPTS = 3
BACKOFF_SECONDS = 1.0

UploadFn = Callable[[PathInfo, Progress, threading.Event], UploadPathResult]


class Reporter(Protocol):
    """Where a push tells what it is doing; called from upload threads too."""

    def start(self, plan: PushPlan) -> None: ...
    def begin(self, path: str, size: int) -> None: ...
    def advance(self, path: str, n: int) -> None: ...       # n < 0: an attempt is undone
    def retry(self, path: str, attempt: int, error: str, delay: float) -> None: ...
    def done(self, path: str, result: UploadPathResult) -> None: ...
    def failed(self, path: str, error: str) -> None: ...
    def stop(self) -> None: ...


def retryable(error: Exception) -> bool:
    return not isinstance(error, ApiError) or error.retryable


def refuses_everything(error: Exception) -> bool:
    # A bad token or a missing push permission refuses every path alike: starting the
    # rest would only repeat the same answer once per path.
    return isinstance(error, ApiError) and error.status in (401, 403)


class PushRunner:
    def __init__(self, upload: UploadFn, reporter: Reporter, *, jobs: int = 4,
                 attempts: int = ATTEMPTS, backoff: float = BACKOFF_SECONDS) -> None:
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self.upload = upload
        self.reporter = reporter
        self.jobs = jobs
        self.attempts = attempts
        self.backoff = backoff
        self.cancel = threading.Event()

    def _with_retries(self, info: PathInfo) -> UploadPathResult:
        for attempt in range(1, self.attempts + 1):
            sent = 0

            def progress(n: int) -> None:
                nonlocal sent
                sent += n
                self.reporter.advance(info.path, n)

            try:
                return self.upload(info, progress, self.cancel)
            except (ClientError, OSError) as e:
                self.reporter.advance(info.path, -sent)
                if attempt == self.attempts or not retryable(e):
                    raise
                delay = self.backoff * 2 ** (attempt - 1)
                self.reporter.retry(info.path, attempt, str(e), delay)
                if self.cancel.wait(delay):
                    raise Cancelled from None
        raise AssertionError("unreachable")

    def run(self, plan: PushPlan) -> PushSummary:
        summary = PushSummary(present=plan.present, upstream=len(plan.upstream))
        rank = {path: i for i, path in enumerate(plan.order)}
        waiting = {path: len(plan.graph.refs[path]) for path in plan.order}
        ready = [rank[p] for p in plan.order if waiting[p] == 0]
        running: dict[Future[UploadPathResult], str] = {}
        done: set[str] = set()
        refused: Exception | None = None
        self.reporter.start(plan)
        started = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="upload")
        try:
            while (ready and refused is None) or running:
                while ready and refused is None and len(running) < self.jobs:
                    path = plan.order[heapq.heappop(ready)]
                    info = plan.uploads[path]
                    self.reporter.begin(path, info.nar_size)
                    running[pool.submit(self._with_retries, info)] = path
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    path = running.pop(future)
                    error = future.exception()
                    if error is not None:
                        if not isinstance(error, ClientError | OSError):
                            raise error
                        self._fail(plan, summary, path, str(error))
                        if refuses_everything(error):
                            refused = error
                        continue
                    done.add(path)
                    self._record(plan, summary, path, future.result())
                    for referrer in plan.graph.referrers[path]:
                        waiting[referrer] -= 1
                        if waiting[referrer] == 0 and referrer not in summary.failed:
                            heapq.heappush(ready, rank[referrer])
            if refused is not None:
                for path in plan.order:
                    if path not in done and path not in summary.failed:
                        summary.failed[path] = f"not attempted: {refused}"
                        self.reporter.failed(path, summary.failed[path])
        except BaseException:
            # Ctrl-C or a bug: stop streaming at the next chunk and let threads unwind.
            self.cancel.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            summary.seconds = time.monotonic() - started
            self.reporter.stop()
        return summary

    def _record(self, plan: PushPlan, summary: PushSummary, path: str,
                result: UploadPathResult) -> None:
        size = plan.uploads[path].nar_size
        summary.sent_bytes += size
        if result.kind == "Uploaded":
            summary.pushed += 1
            summary.pushed_bytes += size
        else:
            summary.deduplicated += 1
        self.reporter.done(path, result)

    def _fail(self, plan: PushPlan, summary: PushSummary, path: str, error: str) -> None:
        summary.failed[path] = error
        self.reporter.failed(path, error)
        # Never list a referrer whose reference is missing: a substituter would find it
        # and then fail on the reference. Those paths wait for the next push.
        name = path.rsplit("/", 1)[-1]
        for dependent in sorted(plan.graph.dependents(path)):
            if dependent not in summary.failed:
                why = f"not uploaded: it needs {name}, which failed"
                summary.failed[dependent] = why
                self.reporter.failed(dependent, why)


def push_paths(api: Api, store: LocalStore, cache: str, roots: list[str], *,
               reporter: Reporter, with_closure: bool = True, jobs: int = 4,
               upstream_filter: bool = True) -> tuple[PushPlan, PushSummary]:
    """Plan and run one push of ``roots`` (store paths) to ``cache``."""
    config = api.cache_config(cache)
    keys = config.upstream_cache_key_names if upstream_filter else []
    plan = plan_push(api, store, cache, roots, with_closure=with_closure, upstream_keys=keys)

    def upload(info: PathInfo, progress: Progress, cancel: threading.Event
               ) -> UploadPathResult:
        return upload_one(api, store, cache, info, progress, cancel)

    return plan, PushRunner(upload, reporter, jobs=jobs).run(plan)
