"""``flywheel serve --tls-cert --tls-key [--client-ca]``: HTTPS, and with a client CA a
certificate required of every client, its subject the caller's identity for roles; cookies
marked Secure; headers claiming another subject ignored."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.server import FlywheelServer

KeyPair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _name(**parts: str) -> x509.Name:
    """Most general first, as CAs issue them (RFC 4514 writes it most specific first)."""
    oids = {"O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME}
    return x509.Name([x509.NameAttribute(oid, parts[k]) for k, oid in oids.items()
                      if k in parts])


def _issue(subject: x509.Name, issuer: KeyPair | None, *, ca: bool = False,
           server: bool = False) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _write(pair: KeyPair, directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(pair[0].public_bytes(serialization.Encoding.PEM))
    key.write_bytes(pair[1].private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


def _tls(pki: dict[str, Path], who: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if who is not None:
        context.load_cert_chain(pki[who], pki[f"{who}_key"])
    return context


def _start(srv: FlywheelServer, client: httpx.Client) -> FlywheelServer:
    srv.launch()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert srv.proc is not None and srv.proc.poll() is None, srv.log()
        try:
            if client.get(f"https://127.0.0.1:{srv.port}/readyz").status_code == 200:
                return srv
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the TLS server did not become ready:\n{srv.log()}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = _issue(_name(CN="Flywheel test CA"), None, ca=True)
    rogue = _issue(_name(CN="Someone else's CA"), None, ca=True)
    files = {"ca": _write(ca, d, "ca")[0]}
    files["server"], files["server_key"] = _write(
        _issue(_name(CN="localhost"), ca, server=True), d, "server")
    files["alice"], files["alice_key"] = _write(
        _issue(_name(CN="alice", O="Acme"), ca), d, "alice")
    files["mallory"], files["mallory_key"] = _write(
        _issue(_name(CN="alice", O="Acme"), rogue), d, "mallory")
    return files


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]
         ) -> Iterator[FlywheelServer]:
    d = tmp_path_factory.mktemp("mtls")
    config = d / "flywheel.toml"
    config.write_text('[auth]\nadmins = ["cert:CN=alice,O=Acme"]\n')
    srv = FlywheelServer(d / "data", workers=1, extra_args=[
        "--config", str(config), "--tls-cert", str(pki["server"]),
        "--tls-key", str(pki["server_key"]), "--client-ca", str(pki["ca"])])
    with httpx.Client(verify=_tls(pki, "alice")) as alice:
        _start(srv, alice)
    yield srv
    srv.stop()


def test_a_client_certificate_is_the_callers_identity(mtls: FlywheelServer,
                                                       pki: dict[str, Path]) -> None:
    url = f"https://127.0.0.1:{mtls.port}"
    with httpx.Client(base_url=url, verify=_tls(pki, "alice")) as alice:
        me = alice.get("/_api/v1/whoami", headers={
            "x-ssl-client-s-dn": "CN=mallory", "x-ssl-client-verify": "SUCCESS",
            "tailscale-user-login": "mallory@example.com"}).json()
        assert (me["identity"], me["via"], me["role"]) == ("cert:CN=alice,O=Acme", "cert",
                                                           "admin")
        page = alice.get("/_ui/")
        assert page.status_code == 200
        cookie = page.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
        assert alice.get("/main/nix-cache-info").status_code == 200
    for who in (None, "mallory"):
        with httpx.Client(base_url=url, verify=_tls(pki, who)) as stranger, \
                pytest.raises(httpx.TransportError):
            stranger.get("/_api/v1/whoami")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{mtls.port}/readyz")


def test_tls_without_client_certificates(tmp_path: Path, pki: dict[str, Path]) -> None:
    srv = FlywheelServer(tmp_path / "data", workers=1, extra_args=[
        "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"])])
    with httpx.Client(verify=_tls(pki)) as client:
        _start(srv, client)
        try:
            url = f"https://127.0.0.1:{srv.port}"
            assert client.get(f"{url}/main/nix-cache-info").status_code == 200
            assert client.get(f"{url}/_api/v1/whoami").status_code == 401
            info = client.get(f"{url}/_api/v1/cache-config/main").json()
            assert info["substituter_endpoint"].startswith("https://")
        finally:
            srv.stop()
