"""The error body every API route returns, in Attic's shape."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: int
    error: str
    message: str
