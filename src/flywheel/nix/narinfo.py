"""The ``<hash>.narinfo`` files of a Nix binary cache.

Parsing is deliberately stricter than Nix's own: narinfo files arrive from
untrusted uploaders and are served back to every client of the cache, so
anything Nix would not have written itself is refused rather than passed on.
"""

import re
import urllib.parse
from dataclasses import dataclass, field

from flywheel.nix.hashes import NixHash
from flywheel.nix.storepath import STORE_DIR, StorePath, parse_base_name, parse_path

MAX_NARINFO_BYTES = 64 * 1024

_MAX_UINT64 = 2**64 - 1
_KNOWN_KEYS = frozenset(
    {
        "StorePath",
        "URL",
        "Compression",
        "FileHash",
        "FileSize",
        "NarHash",
        "NarSize",
        "References",
        "Deriver",
        "System",
        "Sig",
        "CA",
    }
)
_REQUIRED_KEYS = ("StorePath", "URL", "NarHash", "NarSize")
_UNKNOWN_DERIVER = "unknown-deriver"
# C0 and C1 controls except the line feed that separates fields.
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_UINT_RE = re.compile(r"0|[1-9][0-9]*")
_TOKEN_RE = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]+")
_SIG_RE = re.compile(r"[^\s:\x00-\x1f\x7f-\x9f]+:[^\s\x00-\x1f\x7f-\x9f]+")


class NarInfoError(ValueError):
    pass


def _check_url(url: str) -> None:
    if not _TOKEN_RE.fullmatch(url):
        raise NarInfoError(f"URL {url!r} is empty or contains whitespace or control characters")
    if url.startswith("/"):
        raise NarInfoError(f"URL {url!r} is absolute")
    # A backslash is a separator to some HTTP servers and object stores, which
    # would turn "nar\..\x" into a traversal that the segment check cannot see.
    if "\\" in url:
        raise NarInfoError(f"URL {url!r} contains a backslash")
    path = url.split("?", 1)[0].split("#", 1)[0]
    if any(urllib.parse.unquote(seg) == ".." for seg in path.split("/")):
        raise NarInfoError(f"URL {url!r} contains a '..' segment")


def _check_sha256(what: str, h: NixHash) -> None:
    # Nix parses any algorithm here but asserts sha256 when writing, so nothing
    # else can have come from a real Nix.
    if h.algo != "sha256":
        raise NarInfoError(f"{what} must be sha256, not {h.algo}")


def _check_ca(ca: str) -> None:
    allowed: tuple[str, ...]
    if ca.startswith("text:"):
        hash_str, allowed = ca.removeprefix("text:"), ("sha256",)
    elif ca.startswith("fixed:"):
        hash_str = ca.removeprefix("fixed:").removeprefix("r:")
        allowed = ("md5", "sha1", "sha256", "sha512")
    else:
        raise NarInfoError(f"CA {ca!r} is neither 'text:' nor 'fixed:'")
    try:
        h = NixHash.parse(hash_str)
    except ValueError as e:
        raise NarInfoError(f"CA {ca!r} has an invalid hash: {e}") from None
    # Content addresses always spell the hash "algo:digest", never SRI.
    if h.algo not in allowed or not hash_str.startswith(h.algo + ":"):
        raise NarInfoError(f"CA {ca!r} has a hash Nix does not accept there")


@dataclass
class NarInfo:
    """A validated narinfo; construction raises NarInfoError for values Nix would
    never write, so an instance can always be rendered safely."""

    store_path: StorePath
    url: str
    compression: str
    nar_hash: NixHash
    nar_size: int
    references: list[StorePath]
    file_hash: NixHash | None = None
    file_size: int | None = None
    deriver: StorePath | None = None
    system: str | None = None
    sigs: list[str] = field(default_factory=list)
    ca: str | None = None

    def __post_init__(self) -> None:
        _check_url(self.url)
        if not _TOKEN_RE.fullmatch(self.compression):
            raise NarInfoError(f"Compression {self.compression!r} is not a single word")
        _check_sha256("NarHash", self.nar_hash)
        if self.file_hash is not None:
            _check_sha256("FileHash", self.file_hash)
        # Nix treats a zero NarSize as "unknown" and refuses the narinfo; no NAR
        # is shorter than its magic anyway.
        if not 0 < self.nar_size <= _MAX_UINT64:
            raise NarInfoError(f"NarSize {self.nar_size} is out of range")
        if self.file_size is not None and not 0 <= self.file_size <= _MAX_UINT64:
            raise NarInfoError(f"FileSize {self.file_size} is out of range")
        if self.system is not None and not _TOKEN_RE.fullmatch(self.system):
            raise NarInfoError(f"System {self.system!r} is not a single word")
        for sig in self.sigs:
            if not _SIG_RE.fullmatch(sig):
                raise NarInfoError(f"Sig {sig!r} is not 'keyname:signature'")
        if self.ca is not None:
            _check_ca(self.ca)


def _decode(text: str | bytes, max_bytes: int) -> str:
    too_large = NarInfoError(f"narinfo is larger than {max_bytes} bytes")
    if isinstance(text, str):
        # A str cannot be shorter in UTF-8 than in code points, so the cheap check
        # bounds the cost of encoding.
        if len(text) > max_bytes:
            raise too_large
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise NarInfoError("narinfo is not valid UTF-8") from None
        if size > max_bytes:
            raise too_large
        return text
    if len(text) > max_bytes:
        raise too_large
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise NarInfoError("narinfo is not valid UTF-8") from None


def _split_fields(text: str) -> tuple[dict[str, str], list[str]]:
    if not text.endswith("\n"):
        # Nix itself refuses a last line without its newline.
        raise NarInfoError("narinfo is empty or does not end with a newline")
    if m := _CONTROL_RE.search(text):
        raise NarInfoError(f"narinfo contains control character {m.group()!r}")
    fields: dict[str, str] = {}
    sigs: list[str] = []
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        key, sep, value = line.partition(": ")
        if not sep or not key:
            raise NarInfoError(f"line {lineno} is not 'Key: value': {line!r}")
        if key == "Sig":
            sigs.append(value)
        elif key in _KNOWN_KEYS:
            if key in fields:
                raise NarInfoError(f"duplicate {key} field")
            fields[key] = value
    return fields, sigs


def _parse_uint(key: str, value: str) -> int:
    if not _UINT_RE.fullmatch(value):
        raise NarInfoError(f"{key} {value!r} is not a non-negative decimal integer")
    return int(value)


def _parse_hash(key: str, value: str) -> NixHash:
    try:
        return NixHash.parse(value)
    except ValueError as e:
        raise NarInfoError(f"{key}: {e}") from None


def _parse_base_name(key: str, value: str) -> StorePath:
    try:
        return parse_base_name(value)
    except ValueError as e:
        raise NarInfoError(f"{key}: {e}") from None


def parse(text: str | bytes, store_dir: str = STORE_DIR,
          max_bytes: int = MAX_NARINFO_BYTES) -> NarInfo:
    """Parse strictly. ``max_bytes`` bounds untrusted input; a server re-reading what it
    rendered itself (a pusher's narinfo plus its own signature) passes a larger bound."""
    fields, sigs = _split_fields(_decode(text, max_bytes))
    missing = [k for k in _REQUIRED_KEYS if k not in fields]
    if missing:
        raise NarInfoError(f"narinfo lacks {', '.join(missing)}")
    try:
        store_path = parse_path(fields["StorePath"], store_dir)
    except ValueError as e:
        raise NarInfoError(f"StorePath: {e}") from None
    refs = fields.get("References", "")
    deriver = fields.get("Deriver")
    file_hash = fields.get("FileHash")
    file_size = fields.get("FileSize")
    return NarInfo(
        store_path=store_path,
        url=fields["URL"],
        compression=fields.get("Compression", "bzip2"),
        nar_hash=_parse_hash("NarHash", fields["NarHash"]),
        nar_size=_parse_uint("NarSize", fields["NarSize"]),
        # Split on single spaces so that doubled or trailing ones surface as an
        # empty (invalid) reference instead of being silently tolerated.
        references=[_parse_base_name("References", r) for r in refs.split(" ")] if refs else [],
        file_hash=None if file_hash is None else _parse_hash("FileHash", file_hash),
        file_size=None if file_size is None else _parse_uint("FileSize", file_size),
        deriver=(
            None
            if deriver is None or deriver == _UNKNOWN_DERIVER
            else _parse_base_name("Deriver", deriver)
        ),
        system=fields.get("System"),
        sigs=sigs,
        ca=fields.get("CA"),
    )


def render(info: NarInfo, store_dir: str = STORE_DIR) -> str:
    """Serialise in the field order and spelling of Nix's ``NarInfo::to_string``."""
    lines = [
        f"StorePath: {info.store_path.path(store_dir)}",
        f"URL: {info.url}",
        f"Compression: {info.compression}",
    ]
    if info.file_hash is not None:
        lines.append(f"FileHash: {info.file_hash.to_base32()}")
    if info.file_size is not None:
        lines.append(f"FileSize: {info.file_size}")
    lines += [
        f"NarHash: {info.nar_hash.to_base32()}",
        f"NarSize: {info.nar_size}",
        # Nix writes this line even with no references, leaving "References: ".
        "References: " + " ".join(r.base_name for r in info.references),
    ]
    if info.deriver is not None:
        lines.append(f"Deriver: {info.deriver.base_name}")
    if info.system is not None:
        lines.append(f"System: {info.system}")
    lines += [f"Sig: {sig}" for sig in info.sigs]
    if info.ca is not None:
        lines.append(f"CA: {info.ca}")
    return "\n".join(lines) + "\n"


def fingerprint(info: NarInfo, store_dir: str = STORE_DIR) -> str:
    """The string that binary-cache signatures sign.

    Nix keeps references in a sorted set, so they are sorted here whatever order
    the narinfo listed them in.
    """
    refs = ",".join(sorted(r.path(store_dir) for r in info.references))
    return f"1;{info.store_path.path(store_dir)};{info.nar_hash.to_base32()};{info.nar_size};{refs}"
