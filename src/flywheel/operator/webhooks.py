"""GitHub's webhook deliveries: the ``X-Hub-Signature-256`` HMAC checked against the
configured secret before anything in the body is believed, then ``workflow_job`` events
stored for queue times."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from flywheel.errors import FailedPrecondition, Invalid, Unauthenticated
from flywheel.operator.jobs import JobEvent, JobStore, job_event

MAX_DELIVERY_BYTES = 1 << 20   # GitHub caps payloads at 25 MB; a workflow_job is a few KB


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookReceiver:
    def __init__(self, secret: bytes | None, jobs: JobStore) -> None:
        self._secret = secret
        self._jobs = jobs

    def receive(self, event: str | None, signed: str | None, body: bytes) -> JobEvent | None:
        """Check and store one delivery; returns the job event stored, or None for events
        that carry nothing we keep (``ping``, other events)."""
        if self._secret is None:
            raise FailedPrecondition("no webhook secret is configured ([forge] "
                                     "webhook-secret-file), so no delivery can be verified")
        if not signed or not hmac.compare_digest(signature(self._secret, body), signed):
            raise Unauthenticated("the X-Hub-Signature-256 signature does not match")
        if event != "workflow_job":
            return None
        try:
            payload: Any = json.loads(body)
        except ValueError:
            raise Invalid("the delivery is not JSON") from None
        if not isinstance(payload, dict):
            raise Invalid("the delivery is not a JSON object")
        found = job_event(payload)
        self._jobs.record(found)
        return found
