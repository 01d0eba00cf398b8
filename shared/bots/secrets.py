"""Encryption at rest for bot tokens and webhook secrets (AES-256-GCM), with a keyring for rotation.

Public API::

    cipher = TokenCipher.from_settings(settings)   # cached per key set; loads the keys once per process
    blob = cipher.encrypt("123:ABC...", context="bots/<bot_id>/token")   # always with the current key
    cipher.decrypt(blob, context="bots/<bot_id>/token")  # -> "123:ABC..." (current or a previous key)
    cipher.is_current(blob)                        # sealed by the current key, in the current format?
    cipher.reencrypt(blob, context)                # -> the blob under the current key, None if it is

A key is 32 random bytes, base64-encoded. The *current* key encrypts everything new:

* locally and in tests it comes from ``ASKBASE_TOKEN_KEY`` (``settings.token_key``);
* in production from Secret Manager: ``settings.token_key_secret`` is either a full version name
  (``projects/P/secrets/S/versions/V``) or a bare secret id (``latest`` version of ``project_id``).

*Previous* keys (``ASKBASE_TOKEN_KEYS_PREVIOUS``, ``settings.token_keys_previous``: comma-separated, each
checked like the current key) only decrypt. They exist for a rotation (docs/operations.md): the new key
becomes the current one, the old one a previous one, stored ciphertexts move to the new key (when
botrunner reads them, :meth:`shared.bots.registry.BotRegistry.decrypt_token`, or all at once with
``askbase bots rekey``), and then the old key is dropped. Every key is registered with the log filter.

The re-sealing rule, which keeps a rotation monotonic: a process moves (:meth:`TokenCipher.reencrypt`)
only a blob sealed by one of *its own* previous keys (or a ``v1`` blob), and only to *its own* current
key; a blob under its current key is left as it is, and one under a key it does not have fails. Which of
two keys is newer is known to nobody but the operator, so the order comes from the configuration: a key
is listed as previous only once it is retired, never one that is or will become current on any
revision (a process with current OLD and previous NEW would move NEW's blobs back under OLD).
docs/operations.md's recipe follows it: one deploy with current NEW and previous OLD, ``askbase bots
rekey`` once all traffic is on that revision, then OLD dropped.

Generate one with ``python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"``.

The ``context`` is bound into the ciphertext as AES-GCM associated data, so a ciphertext copied into
another bot's document (or from the token field into the secret field) fails to decrypt instead of
silently handing one bot another bot's token.

Stored formats (decisions kept here):

* ``v2:<kid>:`` + urlsafe-base64(nonce(12) || ciphertext+tag): what :meth:`TokenCipher.encrypt` writes.
  ``kid`` (:func:`key_id`) is 16 hex characters of SHA-256 over a fixed label and the key: it names the
  key that sealed the blob, so decryption picks that key and a blob sealed by a key that is no longer
  configured is reported by its key id ("not configured") rather than as tampering. 64 bits of a hash of
  a 256-bit random key reveal nothing usable about the key; they are not secret, and may be logged.
  The kid is not in the associated data: picking the wrong key only fails the tag check.
* ``v1:`` + the same payload, from before key ids: no kid, so each configured key is tried (current
  first). Decrypted, never written; :meth:`TokenCipher.is_current` is False for it, so it moves to ``v2``
  with the rest.

A plaintext is never in an exception message, nor a key or a blob: the messages may reach a log line.

Webhook secrets are also stored as a keyed hash, so the public webhook functions can check the
``X-Telegram-Bot-Api-Secret-Token`` header without the key that decrypts every bot token::

    stored = webhook_secret_hash(bot_id, secret)         # "h1:" + hex HMAC-SHA256, bound to the bot
    webhook_secret_matches(bot_id, presented, stored)    # constant-time comparison

The secret is 256 bits from ``secrets.token_urlsafe``, so the hash cannot be reversed or brute-forced;
the bot id in the HMAC key makes a hash copied into another bot's document useless there. (The hash
depends on no encryption key: a rotation leaves it as it is.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.logs import register_secret

if TYPE_CHECKING:
    from shared.config import Settings

_V1 = "v1:"  # no key id: read, never written
_V2 = "v2:"  # "v2:<kid>:<payload>"
_NONCE_BYTES = 12
_KID_LABEL = b"askbase/token-key-id/v1\x00"
_KID_CHARS = 16
PREVIOUS_KEYS_VARIABLE = "ASKBASE_TOKEN_KEYS_PREVIOUS"


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
    """A stored ciphertext could not be decrypted (wrong key, tampered, or wrong context).

    ``key_id`` is the id of the key a ``v2`` ciphertext names (None for ``v1`` or an unknown format) and
    ``key_configured`` whether that key is among the configured ones: False means a key is missing
    (add it to ``ASKBASE_TOKEN_KEYS_PREVIOUS`` if someone still has it), True that the ciphertext does
    not open with its own key (tampered, or copied from another field or bot). Neither is secret."""

    def __init__(
        self, message: str, *, key_id: str | None = None, key_configured: bool | None = None
    ) -> None:
        super().__init__(message)
        self.key_id = key_id
        self.key_configured = key_configured


def key_id(key: bytes) -> str:
    """The id a ``v2`` ciphertext names its key by: 16 hex characters of SHA-256(label || key)."""
    return hashlib.sha256(_KID_LABEL + key).hexdigest()[:_KID_CHARS]


class TokenCipher:
    """AES-GCM over a keyring: one current 256-bit key that encrypts, and previous keys that only
    decrypt. Thread-safe (AESGCM objects are stateless)."""

    def __init__(self, key: bytes, previous: Sequence[bytes] = ()) -> None:
        for k in (key, *previous):
            if len(k) != 32:
                raise TokenKeyError("a token key must be exactly 32 bytes (base64 of 32 random bytes)")
        self.key_id = key_id(key)
        self._current = AESGCM(key)
        # kid -> AEAD, current first (the order v1 blobs are tried in); a repeated key counts once.
        self._keys: dict[str, AESGCM] = {self.key_id: self._current}
        for k in previous:
            self._keys.setdefault(key_id(k), AESGCM(k))

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._current.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return f"{_V2}{self.key_id}:" + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def is_current(self, blob: str) -> bool:
        """Whether ``blob`` is in the current format under the current key (nothing to re-encrypt).
        Says nothing of whether it decrypts."""
        return bool(blob) and blob.startswith(f"{_V2}{self.key_id}:")

    def decrypt(self, blob: str, context: str) -> str:
        if blob and blob.startswith(_V2):
            kid, sep, payload = blob[len(_V2) :].partition(":")
            if not sep:
                raise DecryptionError("unknown ciphertext format")
            aead, shown = self._keys.get(kid), kid[:_KID_CHARS]
            if aead is None:
                raise DecryptionError(
                    f"ciphertext is sealed by a token key that is not configured (key id {shown})",
                    key_id=shown,
                    key_configured=False,
                )
            plain = _open(aead, payload, context)
            if plain is None:
                raise DecryptionError(
                    f"ciphertext could not be decrypted with its key (key id {shown})",
                    key_id=shown,
                    key_configured=True,
                )
            return plain
        if blob and blob.startswith(_V1):
            for aead in self._keys.values():
                plain = _open(aead, blob[len(_V1) :], context)
                if plain is not None:
                    return plain
            # Never include the blob or a key in the message: this may end up in a log line.
            raise DecryptionError("ciphertext could not be decrypted with any configured token key")
        raise DecryptionError("unknown ciphertext format")

    def reencrypt(self, blob: str, context: str) -> str | None:
        """``blob``'s plaintext encrypted with the current key, or None when ``blob`` already is
        (:meth:`is_current`). Raises :class:`DecryptionError` when no configured key opens it."""
        if self.is_current(blob):
            return None
        return self.encrypt(self.decrypt(blob, context), context)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        """The process-wide cipher for these settings (the keys are loaded once per key set)."""
        env_key = settings.token_key.get_secret_value()
        source = ("env", env_key) if env_key else ("secret-manager", _secret_version_name(settings))
        cache_key = (*source, settings.token_keys_previous.get_secret_value())
        with _lock:
            cipher = _ciphers.get(cache_key)
            if cipher is None:
                cipher = cls(load_key(settings), previous=load_previous_keys(settings))
                _ciphers[cache_key] = cipher
            return cipher


def _open(aead: AESGCM, payload: str, context: str) -> str | None:
    """The plaintext of a base64url(nonce || sealed) payload, or None if this key does not open it."""
    try:
        raw = base64.urlsafe_b64decode(payload.encode("ascii"))
        plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
        return plain.decode("utf-8")
    except (InvalidTag, ValueError, binascii.Error):  # UnicodeError is a ValueError
        return None


_lock = threading.Lock()
_ciphers: dict[tuple[str, str, str], TokenCipher] = {}


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


def load_previous_keys(settings: Settings) -> list[bytes]:
    """The previous keys (``ASKBASE_TOKEN_KEYS_PREVIOUS``, comma-separated), each checked like the current
    key and registered for log redaction; an error names the key by its position, never its value."""
    keys = []
    parts = [p.strip() for p in settings.token_keys_previous.get_secret_value().split(",")]
    for n, part in enumerate(p for p in parts if p):
        register_secret(part)
        keys.append(_decode_key(part, f"{PREVIOUS_KEYS_VARIABLE}[{n}]"))
    return keys
