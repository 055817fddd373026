"""Choosing the blob store from the settings: files in the data directory, or a bucket."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from flywheel.storage.base import BlobStore
from flywheel.storage.local import LocalBlobStore
from flywheel.storage.s3 import S3BlobStore, S3Credentials, S3Location


def read_credentials_file(path: Path, profile: str | None = None) -> S3Credentials:
    """Keys from a file in the AWS shared-credentials format (``[default]`` with
    ``aws_access_key_id`` and ``aws_secret_access_key``), the profile from ``AWS_PROFILE``."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text())
    except (OSError, configparser.Error) as e:
        raise ValueError(f"cannot read the S3 credentials file {path}: "
                         f"{type(e).__name__}") from None
    profile = profile or os.environ.get("AWS_PROFILE") or "default"
    if not parser.has_section(profile):
        raise ValueError(f"the S3 credentials file {path} has no [{profile}] section")
    section = parser[profile]
    key_id = section.get("aws_access_key_id")
    secret = section.get("aws_secret_access_key")
    if not key_id or not secret:
        raise ValueError(f"the S3 credentials file {path} needs aws_access_key_id and "
                         f"aws_secret_access_key in [{profile}]")
    return S3Credentials(key_id, secret, section.get("aws_session_token") or None)


def open_blob_store(data_dir: Path, url: str | None, *, s3_endpoint: str | None = None,
                    s3_region: str | None = None, credentials_file: Path | None = None,
                    multipart_size: int = 16 << 20) -> BlobStore:
    if url is None:
        return LocalBlobStore(data_dir)
    location = S3Location.parse(url)
    credentials = read_credentials_file(credentials_file) if credentials_file else None
    return S3BlobStore(location, endpoint=s3_endpoint, region=s3_region,
                       credentials=credentials, multipart_size=multipart_size,
                       tmp_dir=data_dir / "tmp")
