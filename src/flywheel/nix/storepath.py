"""Store paths: ``<store_dir>/<32-char nix-base32 hash>-<name>``."""

import re
from dataclasses import dataclass

from flywheel.nix.base32 import ALPHABET

STORE_DIR = "/nix/store"
HASH_PART_LEN = 32
MAX_NAME_LEN = 211

_HASH_CHARS = frozenset(ALPHABET)
_NAME_RE = re.compile(r"[A-Za-z0-9+\-._?=]+")


def is_valid_hash_part(s: str) -> bool:
    return len(s) == HASH_PART_LEN and _HASH_CHARS.issuperset(s)


def _check_name(name: str) -> None:
    if not name:
        raise ValueError("store path name is empty")
    if len(name) > MAX_NAME_LEN:
        raise ValueError(f"store path name is longer than {MAX_NAME_LEN} characters")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"store path name {name!r} contains an illegal character")
    # Nix 2.8 itself allows a leading '.', but later releases forbid "." and ".."
    # and anything that could be mistaken for them; refusing the whole class is
    # the simplest rule that no real store path breaks.
    if name.startswith("."):
        raise ValueError(f"store path name {name!r} starts with '.'")


@dataclass(frozen=True)
class StorePath:
    hash_part: str
    name: str

    def __post_init__(self) -> None:
        if not is_valid_hash_part(self.hash_part):
            raise ValueError(
                f"store path hash part {self.hash_part!r} is not {HASH_PART_LEN} "
                "nix-base32 characters"
            )
        _check_name(self.name)

    @property
    def base_name(self) -> str:
        return f"{self.hash_part}-{self.name}"

    def path(self, store_dir: str = STORE_DIR) -> str:
        return f"{store_dir}/{self.base_name}"


def parse_base_name(s: str) -> StorePath:
    if len(s) < HASH_PART_LEN + 2 or s[HASH_PART_LEN] != "-":
        raise ValueError(f"{s!r} is not a store path base name ('<hash>-<name>')")
    try:
        return StorePath(s[:HASH_PART_LEN], s[HASH_PART_LEN + 1 :])
    except ValueError as e:
        raise ValueError(f"invalid store path {s!r}: {e}") from None


def parse_path(path: str, store_dir: str = STORE_DIR) -> StorePath:
    prefix = store_dir + "/"
    if not path.startswith(prefix):
        raise ValueError(f"path {path!r} is not in the Nix store {store_dir!r}")
    return parse_base_name(path[len(prefix) :])
