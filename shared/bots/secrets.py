"""Encryption at rest for bot tokens and webhook secrets (AES-256-GCM).

Public API::

    cipher = TokenCipher.from_settings(settings)   # cached per key; loads the key once per process
    blob = cipher.encrypt("123:ABC...", context="bots/<bot_id>/token")
    cipher.decrypt(blob, context="bots/<bot_id>/token")  # -> "123:ABC..."

The key is 32 random bytes, base64-encoded:

* locally and in tests it comes from ``ASKBASE_TOKEN_KEY`` (``settings.token_key``);
* in production from Secret Manager: ``settings.token_key_secret`` is either a full version name
  (``projects/P/secrets/S/versions/V``) or a bare secret id (``latest`` version of ``project_id``).

Generate one with ``python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"``.

The ``context`` is bound into the ciphertext as AES-GCM associated data, so a ciphertext copied into
another bot's document (or from the token field into the secret field) fails to decrypt instead of
silently handing one bot another bot's token.

Stored format: ``v1:`` + urlsafe-base64(nonce(12) || ciphertext+tag). The version prefix leaves room
for key rotation.

Webhook secrets are also stored as a keyed hash, so the public webhook functions can check the
``X-Telegram-Bot-Api-Secret-Token`` header without the key that decrypts every bot token::

    stored = webhook_secret_hash(bot_id, secret)         # "h1:" + hex HMAC-SHA256, bound to the bot
    webhook_secret_matches(bot_id, presented, stored)    # constant-time comparison

The secret is 256 bits from ``secrets.token_urlsafe``, so the hash cannot be reversed or brute-forced;
the bot id in the HMAC key makes a hash copied into another bot's document useless there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.logs import register_secret

if TYPE_CHECKING:
    from shared.config import Settings

_PREFIX = "v1:"
_NONCE_BYTES = 12


_HASH_PREFIX = "h1:"
_HASH_LABEL = b"askbase/webhook-secret/v1\x00"


def webhook_secret_hash(bot_id: str, secret: str) -> str:
    """The stored form of a bot's webhook secret: HMAC-SHA256 keyed by a fixed label and the bot id."""
    key = _HASH_LABEL + bot_id.encode("utf-8")
    digest = hmac.new(key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return _HASH_PREFIX + digest


def webhook_secret_matches(bot_id: str, presented: str | None, stored_hash: str | None) -> bool:
    """Whether ``presented`` (a header value) is the secret behind ``stored_hash``; constant time."""
    if not presented or not stored_hash:
        return False
    expected = stored_hash.encode("utf-8", "replace")
    return hmac.compare_digest(webhook_secret_hash(bot_id, presented).encode("ascii"), expected)


class TokenKeyError(RuntimeError):
    """The encryption key is missing or malformed; the message names the setting to fix."""


class DecryptionError(RuntimeError):
    """A stored ciphertext could not be decrypted (wrong key, tampered, or wrong context)."""


class TokenCipher:
    """AES-GCM with one 256-bit key. Thread-safe (AESGCM objects are stateless)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise TokenKeyError("the token key must be exactly 32 bytes (base64 of 32 random bytes)")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, blob: str, context: str) -> str:
        if not blob or not blob.startswith(_PREFIX):
            raise DecryptionError("unknown ciphertext format")
        try:
            raw = base64.urlsafe_b64decode(blob[len(_PREFIX) :].encode("ascii"))
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
        except (InvalidTag, ValueError, binascii.Error):
            # Never include the blob or the key in the message: this may end up in a log line.
            raise DecryptionError("ciphertext could not be decrypted with the configured key") from None
        return plain.decode("utf-8")

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        """The process-wide cipher for these settings (the key is loaded once per key source)."""
        env_key = settings.token_key.get_secret_value()
        source = ("env", env_key) if env_key else ("secret-manager", _secret_version_name(settings))
        with _lock:
            cipher = _ciphers.get(source)
            if cipher is None:
                cipher = cls(load_key(settings))
                _ciphers[source] = cipher
            return cipher


_lock = threading.Lock()
_ciphers: dict[tuple[str, str], TokenCipher] = {}


def _decode_key(encoded: str, where: str) -> bytes:
    encoded = encoded.strip()
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        try:
            key = base64.urlsafe_b64decode(encoded)
        except (binascii.Error, ValueError):
            raise TokenKeyError(f"{where} is not valid base64") from None
    if len(key) != 32:
        raise TokenKeyError(f"{where} must decode to 32 bytes, got {len(key)}")
    return key


def _secret_version_name(settings: Settings) -> str:
    name = settings.token_key_secret.strip()
    if not name:
        return ""
    if name.startswith("projects/"):
        return name if "/versions/" in name else name + "/versions/latest"
    return f"projects/{settings.project_id}/secrets/{name}/versions/latest"


def load_key(settings: Settings) -> bytes:
    """Read the key from the environment or Secret Manager and register it for log redaction."""
    encoded = settings.token_key.get_secret_value()
    if encoded:
        register_secret(encoded.strip())
        return _decode_key(encoded, "ASKBASE_TOKEN_KEY")
    version = _secret_version_name(settings)
    if not version:
        raise TokenKeyError(
            "no bot token key: set ASKBASE_TOKEN_KEY (base64 of 32 random bytes) locally, "
            "or ASKBASE_TOKEN_KEY_SECRET (a Secret Manager secret) in production"
        )
    try:
        # Imported lazily: only production needs it, and it is a heavy import.
        from google.cloud import secretmanager
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise TokenKeyError(
            "ASKBASE_TOKEN_KEY_SECRET is set but google-cloud-secret-manager is not installed"
        ) from exc
    client = secretmanager.SecretManagerServiceClient()
    payload = client.access_secret_version(name=version).payload.data.decode("utf-8").strip()
    register_secret(payload)
    return _decode_key(payload, f"Secret Manager secret {version}")
