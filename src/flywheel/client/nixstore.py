"""The local Nix store, through the ``nix`` binaries: closures, path metadata, NAR dumps.

Going through the binaries (not the database) keeps every store Nix supports working,
daemon or not, and leaves hashing and serialisation to the one implementation that
defines them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from flywheel.client.errors import ClientError
from flywheel.nix.hashes import NixHash
from flywheel.nix.storepath import STORE_DIR, parse_path

# Nix 2.8 ships `nix path-info` behind this feature flag.
NIX_COMMAND = ("--extra-experimental-features", "nix-command")
# Keep every command line far below ARG_MAX (a store path is ~60-100 bytes).
ARGS_PER_CALL = 500
DUMP_CHUNK = 256 * 1024


@dataclass(frozen=True)
class PathInfo:
    path: str
    nar_hash: str          # "sha256:<lowercase hex>", the upload API's spelling
    nar_size: int
    references: tuple[str, ...]
    deriver: str | None
    signatures: tuple[str, ...]
    ca: str | None


def hash_part(path: str) -> str:
    """The 32-character hash that names ``path`` on a binary cache."""
    return parse_path(path, os.path.dirname(path)).hash_part


def _run(args: list[str]) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ClientError(f"{args[0]} not found: is Nix installed and on PATH?") from None
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()
        raise ClientError(f"{' '.join(args[:3])} ... failed: "
                          f"{detail[-1] if detail else f'exit status {proc.returncode}'}")
    return proc.stdout


def _batches(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), ARGS_PER_CALL):
        yield items[i:i + ARGS_PER_CALL]


def to_store_path(arg: str, store_dir: str = STORE_DIR) -> str:
    """The store path a command-line argument names: a store path, a file inside one, or
    a symlink to one (``./result``)."""
    prefix = store_dir + "/"
    path = arg if arg.startswith(prefix) else os.path.realpath(arg)
    if not path.startswith(prefix):
        raise ClientError(f"{arg} is not in the Nix store {store_dir}")
    base = path[len(prefix):].split("/", 1)[0]
    try:
        return parse_path(prefix + base, store_dir).path(store_dir)
    except ValueError as e:
        raise ClientError(str(e)) from None


def closure(paths: Iterable[str]) -> list[str]:
    """Every path the given ones need at run time, themselves included."""
    found: set[str] = set()
    for batch in _batches(sorted(set(paths))):
        found.update(_run(["nix-store", "--query", "--requisites", *batch]).split())
    return sorted(found)


def _info(entry: dict[str, object]) -> PathInfo:
    path = str(entry["path"])
    if entry.get("valid") is False:
        raise ClientError(f"{path} is not valid in the local store")
    try:
        nar_hash = NixHash.parse(str(entry["narHash"]))
        if nar_hash.algo != "sha256":
            raise ValueError(f"{nar_hash.algo} is not sha256")
    except (KeyError, ValueError) as e:
        raise ClientError(f"nix path-info gave {path} no usable narHash: {e}") from None
    refs = entry.get("references") or []
    sigs = entry.get("signatures") or []
    if not isinstance(refs, list) or not isinstance(sigs, list):
        raise ClientError(f"nix path-info gave {path} malformed references or signatures")
    deriver = entry.get("deriver")
    ca = entry.get("ca")
    return PathInfo(path=path, nar_hash=f"sha256:{nar_hash.hex()}",
                    nar_size=int(str(entry["narSize"])),
                    references=tuple(str(r) for r in refs),
                    deriver=str(deriver) if deriver else None,
                    signatures=tuple(str(s) for s in sigs),
                    ca=str(ca) if ca else None)


def path_infos(paths: Iterable[str]) -> dict[str, PathInfo]:
    """Metadata for each path, as ``nix path-info --json`` reports it."""
    infos: dict[str, PathInfo] = {}
    for batch in _batches(sorted(set(paths))):
        out = _run(["nix", *NIX_COMMAND, "path-info", "--json", *batch])
        try:
            entries = json.loads(out)
        except json.JSONDecodeError as e:
            raise ClientError(f"nix path-info --json printed invalid JSON: {e}") from None
        for entry in entries:
            info = _info(entry)
            infos[info.path] = info
    return infos


class LocalStore:
    """The store the ``nix`` commands on PATH talk to (honours NIX_REMOTE and friends)."""

    def closure(self, paths: Iterable[str]) -> list[str]:
        return closure(paths)

    def path_infos(self, paths: Iterable[str]) -> dict[str, PathInfo]:
        return path_infos(paths)

    def dump(self, path: str) -> NarDump:
        return NarDump(path)


class NarDump:
    """``nix-store --dump PATH`` as an iterator over its stdout: the NAR is streamed from
    the pipe and never touches the disk. Closing kills the process if it is still going."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._eof = False
        try:
            self._proc = subprocess.Popen(["nix-store", "--dump", path],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise ClientError("nix-store not found: is Nix installed and on PATH?") from None

    def chunks(self) -> Iterator[bytes]:
        assert self._proc.stdout is not None
        while chunk := self._proc.stdout.read(DUMP_CHUNK):
            yield chunk
        self._eof = True

    def failure(self) -> str | None:
        """Why the dump failed, if it ended on its own with an error. A dump we stopped
        reading (because the upload failed) is not at fault and reports nothing."""
        if not self._eof:
            return None
        assert self._proc.stderr is not None
        code = self._proc.wait()
        if code == 0:
            return None
        detail = self._proc.stderr.read().decode(errors="replace").strip().splitlines()
        return (f"nix-store --dump {self.path} failed: "
                f"{detail[-1] if detail else f'exit status {code}'}")

    def check(self) -> None:
        if (message := self.failure()) is not None:
            raise ClientError(message)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()
