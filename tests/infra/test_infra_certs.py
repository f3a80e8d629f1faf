"""The root CAs the functions verify RDS Proxy against: Amazon Trust Services' roots, which the
proxy's ACM certificates chain to (not the RDS CA bundle), taken from certifi's Mozilla store."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from infra.build_assets import ROOT_CERTS_DIR, ROOT_CERTS_FILE

EXPECTED_SUBJECTS = {
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
}
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _certificates(data: bytes) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(block) for block in _PEM.findall(data)]


def _common_name(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.fixture(scope="module")
def shipped() -> list[x509.Certificate]:
    return _certificates((ROOT_CERTS_DIR / ROOT_CERTS_FILE).read_bytes())


def test_the_shipped_file_holds_exactly_the_amazon_trust_services_roots(shipped: list[x509.Certificate]) -> None:
    assert sorted(_common_name(c) for c in shipped) == sorted(EXPECTED_SUBJECTS)
    # The folder is the layer: nothing else ships in it.
    assert [p.name for p in ROOT_CERTS_DIR.iterdir()] == [ROOT_CERTS_FILE]


def test_each_shipped_root_is_a_valid_self_signed_ca(shipped: list[x509.Certificate]) -> None:
    now = datetime.now(UTC)
    for certificate in shipped:
        assert certificate.subject == certificate.issuer, _common_name(certificate)
        assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc


def test_each_shipped_root_is_still_in_certifis_store(shipped: list[x509.Certificate]) -> None:
    with open(certifi.where(), "rb") as store:
        trusted = {c.fingerprint(hashes.SHA256()) for c in _certificates(store.read())}

    for certificate in shipped:
        assert certificate.fingerprint(hashes.SHA256()) in trusted
