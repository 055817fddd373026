"""Blob stores: content addressed by key, written atomically (temp, then placed)."""

from flywheel.storage.base import BlobStore, BlobWriter
from flywheel.storage.local import LocalBlobStore

__all__ = ["BlobStore", "BlobWriter", "LocalBlobStore"]
