"""The bot-token keyring (shared/bots/secrets.py): the current key encrypts, older keys still decrypt,
each ciphertext names the key that sealed it by a key id that reveals nothing of the key."""

from __future__ import annotations

import base64

import pytest

from shared.bots import secrets as bot_secrets
from shared.bots.secrets import DecryptionError, TokenCipher, TokenKeyError, key_id, load_previous_keys
from shared.config import load_settings

OLD, NEW, OTHER = b"o" * 32, b"n" * 32, b"x" * 32
CTX = "bots/b1/token"


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _v1(key: bytes, plaintext: str, context: str) -> str:
    """A ciphertext as stored before key ids existed: ``v1:`` + base64url(nonce || sealed)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = b"\x01" * 12
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
    return "v1:" + base64.urlsafe_b64encode(nonce + sealed).decode()


def test_new_ciphertexts_carry_the_current_keys_id() -> None:
    cipher = TokenCipher(NEW, previous=[OLD])
    blob = cipher.encrypt("123:ABC", CTX)
    version, kid, _ = blob.split(":", 2)
    assert version == "v2" and kid == key_id(NEW) == cipher.key_id
    assert cipher.decrypt(blob, CTX) == "123:ABC"
    assert cipher.is_current(blob)


def test_the_key_id_reveals_nothing_of_the_key() -> None:
    kid = key_id(NEW)
    assert kid == key_id(NEW) != key_id(OLD)  # stable, distinct
    assert len(kid) == 16 and all(c in "0123456789abcdef" for c in kid)
    for shown in (NEW.hex(), _b64(NEW), base64.urlsafe_b64encode(NEW).decode()):
        assert kid not in shown and shown[:8] not in kid


def test_older_keys_still_decrypt_and_are_not_current() -> None:
    old_blob = TokenCipher(OLD).encrypt("123:ABC", CTX)
    ring = TokenCipher(NEW, previous=[OLD])
    assert ring.decrypt(old_blob, CTX) == "123:ABC"
    assert not ring.is_current(old_blob)
    moved = ring.reencrypt(old_blob, CTX)
    assert moved is not None and ring.is_current(moved) and ring.decrypt(moved, CTX) == "123:ABC"
    assert ring.reencrypt(moved, CTX) is None  # already under the current key
    assert TokenCipher(NEW).decrypt(moved, CTX) == "123:ABC"  # the old key can go now
    with pytest.raises(DecryptionError):
        TokenCipher(NEW).decrypt(old_blob, CTX)


def test_v1_ciphertexts_decrypt_with_whichever_key_sealed_them() -> None:
    ring = TokenCipher(NEW, previous=[OTHER, OLD])
    for key in (NEW, OLD):
        blob = _v1(key, "123:ABC", CTX)
        assert ring.decrypt(blob, CTX) == "123:ABC"
        assert not ring.is_current(blob)  # v1 moves to v2 on the next re-encryption
        assert ring.is_current(ring.reencrypt(blob, CTX) or "")
    with pytest.raises(DecryptionError):
        ring.decrypt(_v1(OLD, "123:ABC", CTX), "bots/b2/token")  # the context still binds it


def test_a_ciphertext_no_configured_key_opens_says_so_without_the_key_or_blob() -> None:
    blob = TokenCipher(OLD).encrypt("123:ABC", CTX)
    with pytest.raises(DecryptionError) as info:
        TokenCipher(NEW).decrypt(blob, CTX)
    message = str(info.value)
    assert key_id(OLD) in message and "not configured" in message
    assert blob not in message and _b64(OLD) not in message and _b64(NEW) not in message
    for broken in ("", "v9:abc", "v2:nokid", f"v2:{key_id(NEW)}:%%%", "v1:%%%"):
        with pytest.raises(DecryptionError):
            TokenCipher(NEW).decrypt(broken, CTX)


def test_a_tampered_ciphertext_under_a_known_key_fails() -> None:
    ring = TokenCipher(NEW, previous=[OLD])
    blob = ring.encrypt("123:ABC", CTX)
    # Flip a bit of the sealed bytes themselves: a base64 character next to the padding may carry only
    # unused bits, and changing it decodes to the same bytes (the test passed or failed by the nonce).
    prefix, _, payload = blob.rpartition(":")
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[-1] ^= 0x01
    tampered = f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    with pytest.raises(DecryptionError):
        ring.decrypt(tampered, CTX)


def test_previous_keys_come_from_settings_comma_separated_and_checked_like_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot_secrets, "_ciphers", {})
    both = f" {_b64(OLD)} ,{base64.urlsafe_b64encode(OTHER).decode()},"
    settings = load_settings(_env_file=None, token_key=_b64(NEW), token_keys_previous=both)
    assert load_previous_keys(settings) == [OLD, OTHER]
    cipher = TokenCipher.from_settings(settings)
    assert cipher.key_id == key_id(NEW)
    assert cipher.decrypt(TokenCipher(OTHER).encrypt("t", CTX), CTX) == "t"
    # Another set of previous keys is another cipher (the cache is per key set).
    alone = TokenCipher.from_settings(load_settings(_env_file=None, token_key=_b64(NEW)))
    assert alone is not cipher
    with pytest.raises(DecryptionError):
        alone.decrypt(TokenCipher(OTHER).encrypt("t", CTX), CTX)

    short = _b64(b"s" * 31)
    for bad, where in (
        (f"{_b64(OLD)},{short}", r"ASKBASE_TOKEN_KEYS_PREVIOUS\[1\]"),
        ("not base64!", r"\[0\]"),
    ):
        monkeypatch.setattr(bot_secrets, "_ciphers", {})
        bad_settings = load_settings(_env_file=None, token_key=_b64(NEW), token_keys_previous=bad)
        with pytest.raises(TokenKeyError, match=where) as info:
            TokenCipher.from_settings(bad_settings)
        assert short not in str(info.value) and _b64(OLD) not in str(info.value)


def test_previous_keys_are_scrubbed_from_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.logs import redact

    monkeypatch.setattr(bot_secrets, "_ciphers", {})
    old = _b64(b"q" * 32)
    TokenCipher.from_settings(load_settings(_env_file=None, token_key=_b64(NEW), token_keys_previous=old))
    assert old not in redact(f"key={old}")


def test_the_previous_keys_setting_never_shows_itself() -> None:
    settings = load_settings(_env_file=None, token_keys_previous=_b64(OLD))
    assert _b64(OLD) not in repr(settings) and _b64(OLD) not in str(settings.token_keys_previous)
