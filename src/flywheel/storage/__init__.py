"""Blob stores: content addressed by key, written atomically (temp, then placed), in local
files or an S3-compatible bucket."""

from flywheel.storage.backends import open_blob_store
from flywheel.storage.base import BlobStore, BlobWriter
from flywheel.storage.local import LocalBlobStore

__all__ = ["BlobStore", "BlobWriter", "LocalBlobStore", "open_blob_store"]
