"""State at rest: AES-256-GCM under the server's state key, each ciphertext bound to its
workspace and version so a stored row cannot be moved to another and still decrypt."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_FORMAT = b"\x01"
_NONCE_BYTES = 12
_KEY_BYTES = 32


class StateKeyError(Exception):
    """The key file or a stored ciphertext is unusable; never carries key material."""


def new_key_text() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=_KEY_BYTES * 8)).decode()


def _bound_to(workspace: str, version: int) -> bytes:
    return f"flywheel-state\0{workspace}\0{version}".encode()


class StateCipher:
    def __init__(self, key_text: str) -> None:
        try:
            key = base64.b64decode(key_text, validate=True)
        except binascii.Error:
            raise StateKeyError("the state key file is not base64") from None
        if len(key) != _KEY_BYTES:
            raise StateKeyError(f"the state key must be {_KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, workspace: str, version: int) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _FORMAT + nonce + self._aead.encrypt(nonce, plaintext,
                                                    _bound_to(workspace, version))

    def open(self, sealed: bytes, workspace: str, version: int) -> bytes:
        if sealed[:1] != _FORMAT:
            raise StateKeyError(f"version {version} of workspace {workspace!r} is stored in "
                                "an unknown format")
        nonce, body = sealed[1:1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, _bound_to(workspace, version))
        except InvalidTag:
            raise StateKeyError(f"version {version} of workspace {workspace!r} does not "
                                "decrypt with this server's state key") from None
