"""Tokens: strict claims, expiry that holds with the verified-token cache, revocation that
refuses exactly the tokens issued before it (no sleeps: the clock is injected)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from flywheel.auth.authenticate import Authenticator
from flywheel.auth.authorize import CacheAction, CacheResource, authorize
from flywheel.auth.permissions import ATTIC_CLAIM, CachePermission, Grants
from flywheel.auth.principal import ANONYMOUS, Principal
from flywheel.auth.registry import TokenRegistry
from flywheel.auth.tokens import TokenError, TokenSigner, new_secret, parse_duration
from flywheel.db.engine import Database, make_engine, migrate
from flywheel.errors import Forbidden, NotFound, Unauthenticated

PULL_MAIN = Grants((("main", CachePermission(r=True)),))


class Clock:
    def __init__(self, now: float = 1_800_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    database = Database(engine)
    yield database
    database.close()


def _forge(secret: str, payload: dict[str, object]) -> str:
    return jwt.encode(payload, base64.b64decode(secret), algorithm="HS256")


@pytest.mark.parametrize("exp", [1_900_000_000.5, "1900000000", True, None])
def test_time_claims_must_be_integers(clock: Clock, exp: object) -> None:
    secret = new_secret()
    signer = TokenSigner(secret, clock)
    payload: dict[str, object] = {"sub": "x", **PULL_MAIN.to_claims(), "exp": exp}
    if exp is None:
        payload["nbf"] = "0"
    with pytest.raises(TokenError, match="must be an integer"):
        signer.decode(_forge(secret, payload))


@pytest.mark.parametrize("bit", ["0", "1", 2, None, [1]])
def test_permission_bits_must_be_0_1_or_booleans(clock: Clock, bit: object) -> None:
    secret = new_secret()
    token = _forge(secret, {"sub": "x", ATTIC_CLAIM: {"caches": {"main": {"r": bit}}}})
    with pytest.raises(TokenError):
        TokenSigner(secret, clock).decode(token)


def test_an_expired_token_stays_expired_when_remembered(clock: Clock) -> None:
    signer = TokenSigner(new_secret(), clock)
    token, _ = signer.mint("ci", PULL_MAIN, 60)
    assert signer.decode(token).sub == "ci"  # verified and remembered
    clock.now += 61
    for _ in range(3):
        with pytest.raises(TokenError, match="expired"):
            signer.decode(token)


def test_a_token_is_not_valid_before_its_nbf(clock: Clock) -> None:
    secret = new_secret()
    token = _forge(secret, {"sub": "x", **PULL_MAIN.to_claims(),
                            "nbf": int(clock.now) + 10})
    with pytest.raises(TokenError, match="not valid yet"):
        TokenSigner(secret, clock).decode(token)
    clock.now += 11
    assert TokenSigner(secret, clock).decode(token).sub == "x"


def test_revoking_a_subject_spares_a_token_minted_in_the_same_second(db: Database,
                                                                      clock: Clock) -> None:
    signer = TokenSigner(new_secret(), clock)
    registry = TokenRegistry(db, clock)
    auth = Authenticator(signer, registry)
    before, before_claims = signer.mint("ci", PULL_MAIN, 3600)
    registry.record(before_claims)
    clock.now += 0.3
    assert registry.revoke(sub="ci") == 1
    clock.now += 0.3  # the same second
    after, after_claims = signer.mint("ci", PULL_MAIN, 3600)
    registry.record(after_claims)
    with pytest.raises(Unauthenticated, match="revoked"):
        auth.from_authorization(f"Bearer {before}")
    assert auth.from_authorization(f"Bearer {after}").subject == "ci"
    # A token never recorded here (minted elsewhere with the same secret) in that second
    # cannot be placed before or after the revocation: it is refused.
    unrecorded, _ = signer.mint("ci", PULL_MAIN, 3600)
    with pytest.raises(Unauthenticated, match="revoked"):
        auth.from_authorization(f"Bearer {unrecorded}")


def test_revoking_one_token_by_id(db: Database, clock: Clock) -> None:
    signer = TokenSigner(new_secret(), clock)
    registry = TokenRegistry(db, clock)
    auth = Authenticator(signer, registry)
    one, one_claims = signer.mint("ci", PULL_MAIN, None)
    two, two_claims = signer.mint("ci", PULL_MAIN, None)
    registry.record(one_claims)
    registry.record(two_claims)
    assert registry.revoke(jti=one_claims.jti) == 1
    with pytest.raises(Unauthenticated):
        auth.from_authorization(f"Bearer {one}")
    assert auth.from_authorization(f"Bearer {two}").token_id == two_claims.jti


@pytest.mark.parametrize("text", ["999999999999y", "101y", "0d", "-1d", "1x", ""])
def test_durations_are_bounded(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_authorize_answers_without_telling_names_apart() -> None:
    for public in (None, False):  # a missing cache and a private one read the same
        with pytest.raises(Unauthenticated):
            authorize(ANONYMOUS, CacheResource("secret", public), CacheAction.PULL)
    authorize(ANONYMOUS, CacheResource("open", True), CacheAction.PULL)
    with pytest.raises(Unauthenticated):
        authorize(ANONYMOUS, CacheResource("open", True), CacheAction.PUSH)


def test_authorize_tells_a_rightful_caller_that_a_cache_is_missing() -> None:
    reader = Principal("ci", "token", PULL_MAIN)
    with pytest.raises(NotFound):
        authorize(reader, CacheResource("main", None), CacheAction.PULL)
    with pytest.raises(Forbidden):
        authorize(reader, CacheResource("other", None), CacheAction.PULL)
