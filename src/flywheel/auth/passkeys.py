"""Passkeys (WebAuthn): registered by someone already identified and bound to that identity;
afterwards the passkey alone signs that identity in (a discoverable credential, so no name
is typed). Challenges are stored, usable once, so any replica can finish a ceremony."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from flywheel.auth.identities import Identity
from flywheel.auth.tokens import Clock
from flywheel.db.engine import Database
from flywheel.errors import Conflict, Invalid, NotFound, Unauthenticated
from flywheel.operator.schema import challenges, passkeys

# webauthn is imported by the ceremonies: ~4 MiB per server process, for passkey requests only.

CHALLENGE_SECONDS = 300
MAX_PASSKEYS = 20
MAX_CREDENTIAL_JSON = 64 << 10


@dataclass(frozen=True)
class Passkey:
    credential_id: str
    identity: Identity
    name: str
    created_at: int
    last_used_at: int | None


def _user_handle(identity: Identity) -> bytes:
    return hashlib.sha256(identity.key.encode()).digest()


def _challenge_of(credential: dict[str, Any]) -> bytes:
    """The challenge the browser signed, from clientDataJSON (checked again by webauthn)."""
    import webauthn

    try:
        client_data = json.loads(webauthn.base64url_to_bytes(
            credential["response"]["clientDataJSON"]))
        return webauthn.base64url_to_bytes(client_data["challenge"])
    except (KeyError, TypeError, ValueError):
        raise Invalid("malformed WebAuthn credential") from None


class PasskeyService:
    def __init__(self, db: Database, rp_id: str | None, origin: str, rp_name: str = "Flywheel",
                 clock: Clock = time.time) -> None:
        self._db = db
        self.rp_id = rp_id
        self.origin = origin
        self._rp_name = rp_name
        self._clock = clock

    def _relying_party(self) -> str:
        if self.rp_id is None:
            raise Invalid("passkeys need the server reached by a host name: set public-url "
                          "(or [auth] passkey-rp-id) to a name, not an IP address")
        return self.rp_id

    def _remember(self, challenge: bytes, purpose: str, identity: Identity | None) -> None:
        from webauthn.helpers import bytes_to_base64url

        now = int(self._clock())
        with self._db.write() as conn:
            conn.execute(delete(challenges).where(challenges.c.expires_at < now))
            conn.execute(insert(challenges).values(
                challenge=bytes_to_base64url(challenge), purpose=purpose,
                identity=identity.key if identity else None,
                expires_at=now + CHALLENGE_SECONDS))

    def _consume(self, challenge: bytes, purpose: str, identity: Identity | None) -> None:
        """Use a challenge up: one that was never issued, expired, issued for something else
        or to someone else, or already used, is refused."""
        from webauthn.helpers import bytes_to_base64url

        now = int(self._clock())
        with self._db.write() as conn:
            used = conn.execute(delete(challenges).where(
                challenges.c.challenge == bytes_to_base64url(challenge),
                challenges.c.purpose == purpose, challenges.c.expires_at >= now,
                (challenges.c.identity == identity.key) if identity
                else challenges.c.identity.is_(None))).rowcount
        if not used:
            raise Unauthenticated("the passkey ceremony expired or was already used; "
                                  "start again")

    def registration_options(self, identity: Identity) -> str:
        import webauthn
        from webauthn.helpers.structs import (
            AuthenticatorSelectionCriteria,
            PublicKeyCredentialDescriptor,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        rp_id = self._relying_party()
        existing = [PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(p.credential_id))
                    for p in self.list(identity)]
        if len(existing) >= MAX_PASSKEYS:
            raise Conflict(f"at most {MAX_PASSKEYS} passkeys per identity; remove one first")
        options = webauthn.generate_registration_options(
            rp_id=rp_id, rp_name=self._rp_name, user_name=identity.name[:64],
            user_id=_user_handle(identity), user_display_name=identity.display[:64],
            challenge=secrets.token_bytes(32), exclude_credentials=existing,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED))
        self._remember(options.challenge, "register", identity)
        return webauthn.options_to_json(options)

    def register(self, identity: Identity, credential: dict[str, Any], name: str) -> Passkey:
        import webauthn
        from webauthn.helpers import bytes_to_base64url
        from webauthn.helpers.exceptions import InvalidRegistrationResponse

        rp_id = self._relying_party()
        challenge = _challenge_of(credential)
        self._consume(challenge, "register", identity)
        try:
            verified = webauthn.verify_registration_response(
                credential=credential, expected_challenge=challenge, expected_rp_id=rp_id,
                expected_origin=self.origin)
        except InvalidRegistrationResponse as e:
            raise Invalid(f"the passkey was not accepted: {e}") from None
        credential_id = bytes_to_base64url(verified.credential_id)
        now = int(self._clock())
        with self._db.write() as conn:
            if conn.execute(select(passkeys.c.credential_id).where(
                    passkeys.c.credential_id == credential_id)).first():
                raise Conflict("this passkey is registered already")
            conn.execute(insert(passkeys).values(
                credential_id=credential_id, identity=identity.key,
                display=identity.display[:255], name=name,
                public_key=verified.credential_public_key, sign_count=verified.sign_count,
                created_at=now, last_used_at=None))
        return Passkey(credential_id, identity, name, now, None)

    def authentication_options(self) -> str:
        import webauthn
        from webauthn.helpers.structs import UserVerificationRequirement

        options = webauthn.generate_authentication_options(
            rp_id=self._relying_party(), challenge=secrets.token_bytes(32),
            user_verification=UserVerificationRequirement.PREFERRED)
        self._remember(options.challenge, "login", None)
        return webauthn.options_to_json(options)

    def authenticate(self, credential: dict[str, Any]) -> Identity:
        """The identity a passkey is bound to, once its signature over a fresh challenge
        checks out."""
        import webauthn
        from webauthn.helpers.exceptions import InvalidAuthenticationResponse

        rp_id = self._relying_party()
        challenge = _challenge_of(credential)
        self._consume(challenge, "login", None)
        credential_id = str(credential.get("id", ""))[:1024]
        with self._db.read() as conn:
            row = conn.execute(select(passkeys).where(
                passkeys.c.credential_id == credential_id)).first()
        if row is None:
            raise Unauthenticated("this passkey is not registered here")
        stored = row._mapping
        try:
            verified = webauthn.verify_authentication_response(
                credential=credential, expected_challenge=challenge, expected_rp_id=rp_id,
                expected_origin=self.origin, credential_public_key=stored["public_key"],
                credential_current_sign_count=stored["sign_count"])
        except InvalidAuthenticationResponse as e:
            raise Unauthenticated(f"the passkey was not accepted: {e}") from None
        with self._db.write() as conn:
            conn.execute(update(passkeys).where(passkeys.c.credential_id == credential_id)
                         .values(sign_count=verified.new_sign_count,
                                 last_used_at=int(self._clock())))
        return Identity.parse(stored["identity"], stored["display"])

    def list(self, identity: Identity) -> list[Passkey]:
        with self._db.read() as conn:
            rows = conn.execute(select(passkeys).where(passkeys.c.identity == identity.key)
                                .order_by(passkeys.c.created_at))
            return [Passkey(r.credential_id, identity, r.name, r.created_at, r.last_used_at)
                    for r in rows]

    def rename(self, identity: Identity, credential_id: str, name: str) -> None:
        with self._db.write() as conn:
            if not conn.execute(update(passkeys).where(
                    passkeys.c.credential_id == credential_id,
                    passkeys.c.identity == identity.key).values(name=name)).rowcount:
                raise NotFound("no such passkey of yours")

    def remove(self, identity: Identity, credential_id: str) -> None:
        with self._db.write() as conn:
            if not conn.execute(delete(passkeys).where(
                    passkeys.c.credential_id == credential_id,
                    passkeys.c.identity == identity.key)).rowcount:
                raise NotFound("no such passkey of yours")
