"""The bot registry: encrypted secrets at rest, the public view, activity pagination, generations."""

from __future__ import annotations

import itertools
import threading

import pytest

from shared.bots.registry import IDENTITIES, Bot, BotReader, BotRegistry, IdentityTaken
from shared.bots.secrets import (
    DecryptionError,
    TokenCipher,
    TokenKeyError,
    webhook_secret_hash,
    webhook_secret_matches,
)
from shared.config import SecretStr, load_settings
from shared.gcp import firestore_client

pytestmark = pytest.mark.emulators

TOKEN = "1234567890:AAHk1H6tK7cbbX5fL9m3o0nV8rQ2wYzAbCd"


def _secret_matches(bot: Bot, presented: str) -> bool:
    """Whether ``presented`` is the secret behind the bot's stored hash: the ingress's check."""
    return webhook_secret_matches(bot.id, presented, bot.webhook_secret_hash)


@pytest.fixture
def registry(emulators, settings) -> BotRegistry:
    return BotRegistry.from_settings(settings, db=firestore_client(settings.project_id))


_bot_user_ids = itertools.count(1234567890)


def _create(
    registry: BotRegistry, owner: str = "ann@example.com", token: str = TOKEN, bot_user_id: int | None = None
) -> Bot:
    bot_id = registry.new_id()
    bot_user_id = next(_bot_user_ids) if bot_user_id is None else bot_user_id
    return registry.create_bot(
        bot_id=bot_id,
        owner=owner,
        owner_email=owner,
        platform="telegram",
        name="Docs",
        model="extractive",
        system_prompt="Be brief.",
        token=token,
        platform_info={"username": "docs_bot", "bot_user_id": bot_user_id},
    )


def test_token_and_secret_are_encrypted_at_rest(registry: BotRegistry) -> None:
    bot = _create(registry)
    raw = registry.db.collection("bots").document(bot.id).get().to_dict()
    assert TOKEN not in repr(raw)
    assert TOKEN.split(":")[1] not in repr(raw)
    secret = registry.webhook_secret(bot)
    assert secret not in repr(raw)
    assert raw["token_enc"].startswith("v2:")  # and its key's id (tests/test_token_keyring.py)
    assert registry.decrypt_token(bot) == TOKEN
    assert len(secret) >= 32
    # Never in the repr or the public view.
    assert TOKEN not in repr(bot) and raw["token_enc"] not in repr(bot)
    public = repr(bot.to_public())
    assert TOKEN not in public and secret not in public and "token_enc" not in public


def test_webhook_secret_is_stored_as_a_keyed_hash(registry: BotRegistry) -> None:
    bot = _create(registry)
    secret = registry.webhook_secret(bot)
    raw = registry.db.collection("bots").document(bot.id).get().to_dict()
    assert raw["webhook_secret_hash"] == webhook_secret_hash(bot.id, secret) != secret
    assert raw["webhook_secret_hash"] not in repr(bot) and "webhook_secret_hash" not in repr(bot.to_public())
    assert _secret_matches(bot, secret)
    assert not _secret_matches(bot, secret[:-1])
    assert webhook_secret_hash("another-bot", secret) != raw["webhook_secret_hash"]  # bound to the bot
    # A new token brings a new secret, and its hash with it.
    renewed = registry.replace_token(bot.id, token=TOKEN)
    assert renewed.webhook_secret_hash == webhook_secret_hash(bot.id, registry.webhook_secret(renewed))
    assert not _secret_matches(renewed, secret)


def test_reader_works_without_a_token_key(registry: BotRegistry, settings) -> None:
    bot = _create(registry)
    keyless = settings.model_copy(update={"token_key": SecretStr(""), "token_key_secret": ""})
    with pytest.raises(TokenKeyError):
        BotRegistry.from_settings(keyless)
    reader = BotReader.from_settings(keyless, db=registry.db)
    seen = reader.get_bot(bot.id)
    assert seen is not None and _secret_matches(seen, registry.webhook_secret(bot))
    assert not hasattr(reader, "decrypt_token")


def test_old_bot_gets_its_hash_once(registry: BotRegistry) -> None:
    from google.cloud import firestore

    bot = _create(registry)
    registry.db.collection("bots").document(bot.id).update({"webhook_secret_hash": firestore.DELETE_FIELD})
    old = registry.get_bot(bot.id)
    assert old.webhook_secret_hash == "" and not _secret_matches(old, registry.webhook_secret(old))
    assert registry.ensure_webhook_secret_hash(old)
    fixed = registry.get_bot(bot.id)
    assert _secret_matches(fixed, registry.webhook_secret(fixed))
    assert not registry.ensure_webhook_secret_hash(fixed)


def test_identity_is_claimed_with_the_bot_and_released_on_delete(registry: BotRegistry) -> None:
    bot = _create(registry, bot_user_id=555)
    claim = registry.db.collection(IDENTITIES).document("telegram:555").get()
    assert claim.exists and claim.get("bot_id") == bot.id
    with pytest.raises(IdentityTaken):
        _create(registry, bot_user_id=555)
    assert [b.id for b in registry.list_bots()] == [bot.id]  # the loser left nothing behind
    assert registry.delete_bot(bot.id)
    assert not registry.db.collection(IDENTITIES).document("telegram:555").get().exists
    again = _create(registry, bot_user_id=555)  # the platform bot can be registered again
    assert registry.db.collection(IDENTITIES).document("telegram:555").get().get("bot_id") == again.id


def test_concurrent_creates_of_one_platform_bot_one_wins(registry: BotRegistry) -> None:
    barrier = threading.Barrier(2)
    results: list[object] = []

    def create() -> None:
        barrier.wait()
        try:
            results.append(_create(registry, bot_user_id=777))
        except IdentityTaken as exc:
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(type(r).__name__ for r in results) == ["Bot", "IdentityTaken"]
    assert len(registry.list_bots()) == 1


def test_ciphertext_is_bound_to_the_bot(registry: BotRegistry) -> None:
    one, two = _create(registry), _create(registry, token="987654321:AAHk1H6tK7cbbX5fL9m3o0nV8rQ2wYzXyZw")
    # A ciphertext copied into another bot's document does not decrypt there.
    registry.db.collection("bots").document(two.id).update({"token_enc": one.token_enc})
    with pytest.raises(DecryptionError):
        registry.decrypt_token(registry.get_bot(two.id))


def test_cipher_rejects_bad_keys_and_wrong_keys() -> None:
    with pytest.raises(TokenKeyError):
        TokenCipher(b"short")
    blob = TokenCipher(b"k" * 32).encrypt("secret-value", "ctx")
    with pytest.raises(DecryptionError) as info:
        TokenCipher(b"j" * 32).decrypt(blob, "ctx")
    assert blob not in str(info.value)
    settings = load_settings(token_key="bm90IGJhc2U2NA==")  # 10 bytes
    with pytest.raises(TokenKeyError):
        TokenCipher.from_settings(settings)


def test_get_unknown_or_malformed_id(registry: BotRegistry) -> None:
    assert registry.get_bot("nope") is None
    assert registry.get_bot("a/b/c") is None
    assert registry.get_bot("") is None


def test_list_by_owner(registry: BotRegistry) -> None:
    a1, _b, a2 = _create(registry), _create(registry, owner="bob@example.com"), _create(registry)
    assert [b.id for b in registry.list_bots("ann@example.com")] == [a1.id, a2.id]
    assert len(registry.list_bots()) == 3


def test_activity_is_paginated_with_ttl_and_redacted(registry: BotRegistry) -> None:
    bot = _create(registry)
    for i in range(7):
        registry.record_activity(bot.id, "message", f"entry {i}")
    registry.record_activity(bot.id, "error", f"failed calling /bot{TOKEN}/getMe")
    page = registry.activity(bot.id, limit=3)
    assert len(page.items) == 3 and page.next_cursor
    seen = [e.message for e in page.items]
    while page.next_cursor:
        page = registry.activity(bot.id, limit=3, cursor=page.next_cursor)
        seen += [e.message for e in page.items]
    assert len(seen) == 8 and len(set(seen)) == 8
    assert not any(TOKEN in m for m in seen)
    doc = next(iter(registry.db.collection("bots").document(bot.id).collection("activity").stream()))
    delta = doc.get("expire_at") - doc.get("at")
    assert delta.days == 30


def test_generation_guards_status(registry: BotRegistry) -> None:
    bot = _create(registry)
    started = registry.set_desired(bot.id, "running")
    assert started.status == "starting" and started.generation == 1
    stopped = registry.set_desired(bot.id, "stopped")
    assert stopped.generation == 2
    # A status computed for the old generation is refused.
    assert not registry.commit_status(bot.id, 1, "running", None)
    assert registry.commit_status(bot.id, 2, "stopped", None)
    assert registry.get_bot(bot.id).status == "stopped"


def test_delete_removes_activity(registry: BotRegistry) -> None:
    bot = _create(registry)
    registry.record_activity(bot.id, "created", "hello")
    assert registry.delete_bot(bot.id)
    assert registry.get_bot(bot.id) is None
    assert list(registry.db.collection("bots").document(bot.id).collection("activity").stream()) == []


def test_key_from_secret_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production reads the key from Secret Manager (here a stand-in client) and scrubs it from logs."""
    import base64

    from google.cloud import secretmanager

    from shared.bots import secrets as bot_secrets
    from shared.logs import redact

    key = base64.b64encode(b"s" * 32).decode()
    asked: list[str] = []

    class Payload:
        data = key.encode()

    class Response:
        payload = Payload()

    class FakeClient:
        def access_secret_version(self, name: str) -> Response:
            asked.append(name)
            return Response()

    monkeypatch.setattr(secretmanager, "SecretManagerServiceClient", FakeClient)
    monkeypatch.setattr(bot_secrets, "_ciphers", {})
    settings = load_settings(token_key="", token_key_secret="bot-token-key", project_id="p1")
    cipher = TokenCipher.from_settings(settings)
    assert asked == ["projects/p1/secrets/bot-token-key/versions/latest"]
    assert TokenCipher.from_settings(settings) is cipher  # loaded once per process
    assert TokenCipher(b"s" * 32).decrypt(cipher.encrypt("x", "c"), "c") == "x"
    assert key not in redact(f"key={key} and {key}")
    full = "projects/p2/secrets/k/versions/3"
    TokenCipher.from_settings(load_settings(token_key="", token_key_secret=full))
    assert asked[-1] == full
