"""The S3 blob store against a real S3 server (SeaweedFS): streamed and multipart uploads,
nothing left by an upload that failed its verification, reads, presigned URLs, listing."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import httpx
import pytest

from flywheel.errors import Unavailable
from flywheel.storage.backends import open_blob_store, read_credentials_file
from flywheel.storage.s3 import S3BlobStore
from tests.support.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer

MULTIPART = 5 << 20


@pytest.fixture
def store(seaweed: SeaweedServer, tmp_path: Path) -> S3BlobStore:
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                     f"aws_secret_access_key = {SECRET_KEY}\n")
    blobs = open_blob_store(tmp_path, f"s3://{seaweed.new_bucket_name()}/some/prefix",
                            s3_endpoint=seaweed.endpoint, s3_region="us-east-1",
                            credentials_file=creds, multipart_size=MULTIPART)
    assert isinstance(blobs, S3BlobStore)
    return blobs


def _keys(store: S3BlobStore) -> set[str]:
    return {m["path"] for m in store._list("")}


def test_small_and_multipart_uploads_are_placed_and_read_back(store: S3BlobStore) -> None:
    big = hashlib.sha256(b"seed").digest() * (3 * MULTIPART // 32 + 7)
    for data in (b"small blob", big):
        writer = store.writer()
        for i in range(0, len(data), 1 << 20):
            writer.write(data[i:i + (1 << 20)])
        writer.finish()
        writer.place("nar/one")
        writer.place("nar/one")  # placing again is harmless (content is immutable)
        writer.close()
        assert store.size("nar/one") == len(data)
        with store.open("nar/one") as f:
            assert f.read() == data
    assert _keys(store) == {"nar/one"}  # the staging object is gone
    assert list(store.iter_keys("nar/")) == ["nar/one"]
    assert store.modified("nar/one") is not None
    store.delete("nar/one")
    store.delete("nar/one")  # already gone: no error
    assert store.size("nar/one") is None
    with pytest.raises(FileNotFoundError):
        store.open("nar/one")


def test_an_upload_closed_before_it_finished_leaves_no_object(store: S3BlobStore) -> None:
    for size in (1000, 3 * MULTIPART):
        writer = store.writer()
        writer.write(b"x" * size)
        writer.close()  # as after a failed verification
    assert _keys(store) == set()
    assert list(store.stale_uploads(0)) == []


def test_presigned_urls_serve_the_blob_without_credentials(store: S3BlobStore) -> None:
    store.put("cas/abc", b"content")
    url = store.url("cas/abc", 60)
    assert "Signature" in url and SECRET_KEY not in url
    assert httpx.get(url).content == b"content"


def test_an_unreachable_bucket_is_unavailable_and_logs_no_secret(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                     f"aws_secret_access_key = {SECRET_KEY}\n")
    store = open_blob_store(tmp_path, "s3://nowhere/x", s3_endpoint="http://127.0.0.1:9",
                            credentials_file=creds)
    with caplog.at_level(logging.ERROR), pytest.raises(Unavailable):
        store.size("nar/x")
    assert SECRET_KEY not in caplog.text and SECRET_KEY not in repr(
        read_credentials_file(creds))
    assert "127.0.0.1:9" in store.describe() and SECRET_KEY not in store.describe()


def test_a_credentials_file_without_keys_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "credentials"
    bad.write_text("[default]\naws_access_key_id = only-the-id\n")
    with pytest.raises(ValueError, match="aws_secret_access_key"):
        read_credentials_file(bad)
