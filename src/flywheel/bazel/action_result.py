"""Validation of ActionResult entries before they are stored or served."""

from __future__ import annotations

import posixpath
from typing import Any

from google.protobuf.message import DecodeError

from flywheel.bazel.digests import Digest, DigestError
from flywheel.bazel.reapi import re_pb2

MAX_ACTION_RESULT_BYTES = 16 << 20


class ActionResultError(ValueError):
    """Not a valid ActionResult; the message is safe to return to the client."""


def _digest(d: Any, where: str) -> Digest:
    try:
        return Digest(d.hash, d.size_bytes)
    except DigestError as e:
        raise ActionResultError(f"{where}: {e}") from None


def _path(p: str, where: str) -> None:
    if not p or p.startswith("/") or ".." in p.split("/") or "\0" in p or \
            posixpath.normpath(p) != p.rstrip("/"):
        raise ActionResultError(f"{where}: invalid output path {p[:120]!r}")


def parse_action_result(data: bytes) -> Any:
    if len(data) > MAX_ACTION_RESULT_BYTES:
        raise ActionResultError("ActionResult too large")
    result = re_pb2.ActionResult()
    try:
        result.ParseFromString(data)
    except DecodeError as e:
        raise ActionResultError(f"not a serialized ActionResult: {e}") from None
    referenced_digests(result)
    return result


def referenced_digests(result: Any) -> list[Digest]:
    """Every CAS blob a client must be able to fetch to use this result; validates paths."""
    digests: list[Digest] = []
    for f in result.output_files:
        _path(f.path, "output_files")
        digests.append(_digest(f.digest, f"output file {f.path[:120]}"))
    for d in result.output_directories:
        _path(d.path, "output_directories")
        digests.append(_digest(d.tree_digest, f"output directory {d.path[:120]}"))
    for s in list(result.output_file_symlinks) + list(result.output_directory_symlinks) + \
            list(result.output_symlinks):
        _path(s.path, "output symlinks")
    if result.HasField("stdout_digest"):
        digests.append(_digest(result.stdout_digest, "stdout_digest"))
    if result.HasField("stderr_digest"):
        digests.append(_digest(result.stderr_digest, "stderr_digest"))
    return [d for d in digests if not d.is_empty]


def tree_digests(result: Any) -> list[Digest]:
    """The Tree blobs of a result's output directories."""
    return [_digest(d.tree_digest, f"output directory {d.path[:120]}")
            for d in result.output_directories]


def tree_file_digests(data: bytes) -> list[Digest]:
    """Every file blob an output directory's Tree names, so a result whose directory
    contents are gone can be treated as a miss."""
    tree = re_pb2.Tree()
    try:
        tree.ParseFromString(data)
    except DecodeError as e:
        raise ActionResultError(f"not a serialized Tree: {e}") from None
    return [d for directory in (tree.root, *tree.children) for f in directory.files
            if not (d := _digest(f.digest, f"file {f.name[:120]}")).is_empty]
