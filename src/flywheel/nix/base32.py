"""Nix's base32 encoding.

This is not RFC 4648 base32: the alphabet omits e, o, u and t, and the digits are
taken from the little-endian bit stream of the input and written most significant
digit first. Reading the input as one little-endian integer and printing it in
base 32 with a fixed width gives exactly that, in linear time.
"""

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"

_DIGIT_BITS = {c: format(i, "05b") for i, c in enumerate(ALPHABET)}


def encoded_length(n_bytes: int) -> int:
    """Number of base32 characters Nix uses for ``n_bytes`` bytes."""
    if n_bytes < 0:
        raise ValueError(f"negative byte count {n_bytes}")
    return (n_bytes * 8 + 4) // 5


def encode(data: bytes) -> str:
    length = encoded_length(len(data))
    if length == 0:
        return ""
    bits = format(int.from_bytes(data, "little"), f"0{length * 5}b")
    return "".join(ALPHABET[int(bits[i : i + 5], 2)] for i in range(0, length * 5, 5))


def decode(s: str) -> bytes:
    n_bytes = len(s) * 5 // 8
    if encoded_length(n_bytes) != len(s):
        raise ValueError(f"invalid Nix base32 length {len(s)}")
    try:
        bits = "".join(_DIGIT_BITS[c] for c in s)
    except KeyError as e:
        raise ValueError(f"invalid Nix base32 character {e.args[0]!r}") from None
    if not bits:
        return b""
    value = int(bits, 2)
    # Nix rejects strings whose top digit carries bits beyond the last byte, so
    # every byte string has exactly one valid encoding.
    if value >> (n_bytes * 8):
        raise ValueError(f"invalid Nix base32 string {s!r}: non-zero leftover bits")
    return value.to_bytes(n_bytes, "little")
