"""shared.idtokens: the one ID-token verifier, against a loopback issuer (real google-auth checks)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.config import Settings
from shared.devstack.issuer import LocalIssuer
from shared.idtokens import TokenError, TokenVerifier, require_service_caller

AUD = "https://botrunner.example.run.app"
SA = "qa@p.iam.gserviceaccount.com"


def _status(verifier: TokenVerifier, header: str | None, allowed: list[str] | None = None) -> int:
    try:
        verifier.service_caller(header, AUD, [SA] if allowed is None else allowed)
    except TokenError as exc:
        return exc.status
    return 200


def test_malformed_tokens_are_refused_without_fetching_certificates(issuer: LocalIssuer) -> None:
    verifier = TokenVerifier(issuer.certs_url, [issuer.issuer])
    before = issuer.certs_requests
    junk = [None, "", "Basic abc", "Bearer x", "Bearer a.b.c", "Bearer " + "A" * 9000, "Bearer e30.e30.sig"]
    for header in junk:
        assert _status(verifier, header) == 401, header
    assert issuer.certs_requests == before and verifier.certificate_fetches == 0


def test_certificates_are_cached_and_unknown_keys_do_not_cause_a_fetch_each(issuer: LocalIssuer) -> None:
    verifier = TokenVerifier(issuer.certs_url, [issuer.issuer])
    for _ in range(5):
        assert _status(verifier, "Bearer " + issuer.mint(SA, AUD)) == 200
    assert verifier.certificate_fetches == 1
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for i in range(20):
        token = issuer.mint(SA, AUD, key=forged, key_id=f"unknown-{i}")
        assert _status(verifier, "Bearer " + token) == 401
    # Fetched within the last minute: an unknown key id is refused from the cache.
    assert verifier.certificate_fetches == 1


def test_each_check_refuses_what_it_should(issuer: LocalIssuer) -> None:
    verifier = TokenVerifier(issuer.certs_url, [issuer.issuer])
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        issuer.mint(SA, "https://other.example"): 401,  # audience
        issuer.mint(SA, AUD, lifetime=-600): 401,  # expired
        issuer.mint(SA, AUD, iss="https://evil.example"): 401,  # issuer
        issuer.mint(SA, AUD, key=forged): 401,  # signature
        issuer.mint(SA, AUD, email_verified=False): 403,
        issuer.mint("mallory@gmail.com", AUD): 403,  # valid, but not on this route's list
    }
    for token, status in cases.items():
        assert _status(verifier, "Bearer " + token) == status
    # An empty caller list allows nobody (fail closed).
    assert _status(verifier, "Bearer " + issuer.mint(SA, AUD), allowed=[]) == 403


def test_unreachable_certificates_are_503_not_401(issuer: LocalIssuer) -> None:
    verifier = TokenVerifier("http://127.0.0.1:9/certs", [issuer.issuer])
    with pytest.raises(TokenError) as err:
        verifier.verify(issuer.mint(SA, AUD), AUD)
    assert err.value.status == 503


def test_a_failed_refresh_keeps_the_cached_keys(issuer: LocalIssuer) -> None:
    """A certificates outage after the first fetch does not turn every request into a 503."""
    calls: list[str] = []
    real = TokenVerifier(issuer.certs_url, [issuer.issuer])._certs._http_get

    def flaky(url: str) -> bytes:
        calls.append(url)
        if len(calls) > 1:
            raise OSError("certificates unreachable")
        return real(url)

    verifier = TokenVerifier(issuer.certs_url, [issuer.issuer], fetch=flaky)
    assert _status(verifier, "Bearer " + issuer.mint(SA, AUD)) == 200
    verifier._certs._fetched_at -= 2 * 3600  # the cache is past its TTL: the next call refreshes
    assert _status(verifier, "Bearer " + issuer.mint(SA, AUD)) == 200
    assert len(calls) == 2  # it tried, failed, and kept the keys
    assert _status(verifier, "Bearer " + issuer.mint(SA, AUD)) == 200
    assert len(calls) == 2  # and waits before trying again


def _required(settings: Settings, header: str | None, allowed: list[str] | None = None) -> str | int | None:
    try:
        return require_service_caller(settings, header, AUD, [SA] if allowed is None else allowed)
    except TokenError as exc:
        return exc.status


def test_require_service_caller_checks_tokens_under_google_oidc(
    oidc_settings: Settings, issuer: LocalIssuer
) -> None:
    assert _required(oidc_settings, "Bearer " + issuer.mint(SA, AUD)) == SA
    assert _required(oidc_settings, None) == 401
    assert _required(oidc_settings, "Bearer junk") == 401
    assert _required(oidc_settings, "Bearer " + issuer.mint(SA, "https://other.example")) == 401
    assert _required(oidc_settings, "Bearer " + issuer.mint("mallory@gmail.com", AUD)) == 403
    assert _required(oidc_settings, "Bearer " + issuer.mint(SA, AUD), allowed=[]) == 403  # fail closed
    unreachable = oidc_settings.model_copy(update={"oidc_certs_url": "http://127.0.0.1:9/certs"})
    assert _required(unreachable, "Bearer " + issuer.mint(SA, AUD)) == 503


def test_require_service_caller_checks_nothing_without_internal_auth(settings: Settings) -> None:
    """internal_auth=none (local stack, tests): no token needed, none verified, even a bad one."""
    assert settings.internal_auth == "none"
    assert _required(settings, None) is None
    assert _required(settings, "Bearer junk", allowed=[]) is None
