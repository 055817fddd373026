"""Who a request says it comes from, beyond tokens: a tailnet login added by ``tailscale
serve``, a client certificate verified by a proxy (nginx, Envoy) or by the server itself.

Identity headers are believed only from configured proxy addresses; the same headers from
anywhere else are ignored, and logged, since they are someone trying to be someone else."""

from __future__ import annotations

import email.header
import ipaddress
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

TAILNET_LOGIN = "tailscale-user-login"
TAILNET_NAME = "tailscale-user-name"
FUNNEL = "tailscale-funnel-request"
# nginx forwards $ssl_client_s_dn and $ssl_client_verify under these names (README).
NGINX_SUBJECT = "x-ssl-client-s-dn"
NGINX_VERIFY = "x-ssl-client-verify"
ENVOY_XFCC = "x-forwarded-client-cert"
IDENTITY_HEADERS = (TAILNET_LOGIN, TAILNET_NAME, NGINX_SUBJECT, NGINX_VERIFY, ENVOY_XFCC)

MAX_NAME = 255
KINDS = ("tailnet", "cert", "token")
_XFCC_SUBJECT = re.compile(r'(?:^|;)Subject="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Identity:
    """``kind:name``, the form roles are mapped from: ``tailnet:alice@example.com``,
    ``cert:CN=alice,O=Acme``, ``token:ci-bot``. ``display`` is for people only."""

    kind: str
    name: str
    display: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def github_login(self) -> str | None:
        """Tailscale writes a login made through GitHub as ``user@github``."""
        if self.kind == "tailnet" and self.name.endswith("@github"):
            return self.name.removesuffix("@github")
        return None

    @classmethod
    def parse(cls, key: str, display: str | None = None) -> Identity:
        kind, sep, name = key.partition(":")
        if not sep or kind not in KINDS or not name:
            raise ValueError(f"not an identity: {key[:80]!r}")
        return cls(kind, name, display or name)


def _clean(text: str) -> str | None:
    """A header value fit to be a name: printable, bounded; anything else is refused."""
    text = text.strip()
    if not text or len(text) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    return text


def decode_rfc2047(value: str) -> str:
    """``Tailscale-User-Name`` is RFC 2047-encoded when it is not ASCII."""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return value


class TrustedProxies:
    def __init__(self, networks: Sequence[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusts(self, address: str | None) -> bool:
        if not address or not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._networks)


def _xfcc_subject(value: str) -> str | None:
    """The Subject of the client's certificate: the last element, the hop nearest to us."""
    element = value.split(",")[-1] if 'Subject="' not in value else value
    found = _XFCC_SUBJECT.findall(element)
    return found[-1].replace('\\"', '"') if found else None


def from_proxy(headers: Mapping[str, str]) -> Identity | None:
    """The identity a trusted proxy asserts, or None (Funnel requests come from the public
    internet through the tailnet node and carry no identity, whatever else they say)."""
    if FUNNEL in headers:
        return None
    login = headers.get(TAILNET_LOGIN)
    if login is not None:
        name = _clean(login)
        if name is None:
            return None
        shown = _clean(decode_rfc2047(headers.get(TAILNET_NAME, ""))) or name
        return Identity("tailnet", name, shown)
    subject = headers.get(NGINX_SUBJECT)
    if subject is not None:
        if headers.get(NGINX_VERIFY, "").strip() != "SUCCESS":
            return None
        return certificate(subject)
    xfcc = headers.get(ENVOY_XFCC)
    if xfcc is not None:
        subject = _xfcc_subject(xfcc)
        return certificate(subject) if subject else None
    return None


def certificate(subject: str) -> Identity | None:
    name = _clean(subject)
    return Identity("cert", name, name) if name else None


def spoofed(headers: Mapping[str, str], address: str | None) -> bool:
    """Identity headers from an address that may not assert them: logged, then ignored."""
    present = [h for h in IDENTITY_HEADERS if h in headers]
    if present:
        log.warning("ignored identity headers %s from untrusted address %s",
                    ", ".join(present), address)
    return bool(present)
