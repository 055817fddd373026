"""The errors the client reports to a person; every one carries a message fit to print."""

from __future__ import annotations


class ClientError(Exception):
    """Something the user can act on: a bad argument, a missing profile, a failed command."""


class ApiError(ClientError):
    """The server refused a request; ``message`` is the server's own explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        # A refusal (bad upload info, no permission, no such cache) will be refused
        # again; only overload, timeouts and server faults can go away on their own.
        return self.status in (408, 429) or self.status >= 500
