"""Rotating the bot-token key on the emulators: stored tokens move to the current key when botrunner reads
them (a message, a start, the reconcile) and with ``askbase bots rekey``; a token replaced meanwhile is
never overwritten."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from click.testing import CliRunner
from google.api_core import exceptions as gexc

from shared.bots.control import BotControl, Caller
from shared.bots.platforms.errors import RetryPolicy
from shared.bots.registry import Bot, BotRegistry
from shared.bots.secrets import TokenCipher, key_id
from shared.cli.bots import bots_group
from shared.config import get_settings
from shared.gcp import firestore_client
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.emulators

# Fixtures: tg, dc, tg_hook, dc_hook, discord_keys, bot_settings, control.
pytest_plugins = ["tests.fakes.bot_fixtures"]

OLD, OTHER = b"o" * 32, b"x" * 32
TOKEN = "1234567890:AAHk1H6tK7cbbX5fL9m3o0nV8rQ2wYzAbCd"


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _current_key(settings: Any) -> bytes:
    return base64.b64decode(settings.token_key.get_secret_value())


def _raw(registry: BotRegistry, bot_id: str) -> dict[str, Any]:
    return registry.db.collection("bots").document(bot_id).get().to_dict() or {}


def _create(registry: BotRegistry, token: str = TOKEN, bot_user_id: int = 1234567890) -> Bot:
    return registry.create_bot(
        bot_id=registry.new_id(),
        owner="ann@example.com",
        owner_email="ann@example.com",
        platform="telegram",
        name="Docs",
        model="extractive",
        system_prompt="",
        token=token,
        platform_info={"username": f"docs{bot_user_id}_bot", "bot_user_id": bot_user_id},
    )


@pytest.fixture
def db(emulators, settings) -> Any:
    return firestore_client(settings.project_id)


@pytest.fixture
def old_registry(db) -> BotRegistry:
    """The registry as it was before the rotation: the old key only."""
    return BotRegistry(db, TokenCipher(OLD))


@pytest.fixture
def ring(db, settings) -> BotRegistry:
    """After the rotation: the new key (the settings' one) encrypts, the old one still decrypts."""
    return BotRegistry(db, TokenCipher(_current_key(settings), previous=[OLD]))


def _current(registry: BotRegistry, blob: str) -> bool:
    return blob.startswith(f"v2:{registry._cipher.key_id}:")


# --- re-encryption when botrunner reads a token ----------------------------------------------------


def test_reading_an_old_keys_token_moves_both_secrets_to_the_current_key(
    old_registry: BotRegistry, ring: BotRegistry, settings: Any
) -> None:
    bot = _create(old_registry)
    secret = old_registry.webhook_secret(bot)
    before = _raw(ring, bot.id)
    assert ring.decrypt_token(ring.get_bot(bot.id)) == TOKEN

    after = _raw(ring, bot.id)
    assert _current(ring, after["token_enc"]) and _current(ring, after["webhook_secret_enc"])
    # Only the ciphertexts changed: not the secret (nor its hash), the generation or the owner's updated_at.
    for field in ("webhook_secret_hash", "generation", "updated_at", "status", "desired"):
        assert after[field] == before[field], field
    # The old key can go now.
    new_only = BotRegistry(ring.db, TokenCipher(_current_key(settings)))
    moved = new_only.get_bot(bot.id)
    assert new_only.decrypt_token(moved) == TOKEN and new_only.webhook_secret(moved) == secret


def test_a_v1_token_from_before_key_ids_is_moved_too(old_registry: BotRegistry, ring: BotRegistry) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    bot = _create(old_registry)
    nonce = b"\x02" * 12
    sealed = AESGCM(OLD).encrypt(nonce, TOKEN.encode(), f"bots/{bot.id}/token".encode())
    legacy = "v1:" + base64.urlsafe_b64encode(nonce + sealed).decode()
    ring.db.collection("bots").document(bot.id).update({"token_enc": legacy})
    assert ring.decrypt_token(ring.get_bot(bot.id)) == TOKEN
    assert _current(ring, _raw(ring, bot.id)["token_enc"])


def test_a_token_replaced_meanwhile_is_not_overwritten_by_the_re_encryption(
    old_registry: BotRegistry, ring: BotRegistry, settings: Any
) -> None:
    bot = _create(old_registry)
    read_before = ring.get_bot(bot.id)  # old-key ciphertexts
    new_token = "1234567890:AAHzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
    ring.replace_token(bot.id, new_token)  # the owner's Replace token lands in between
    replaced = _raw(ring, bot.id)

    assert ring.decrypt_token(read_before) == TOKEN  # the copy read before still decrypts...
    after = _raw(ring, bot.id)
    assert after["token_enc"] == replaced["token_enc"]  # ...but its re-encryption does not land
    assert after["webhook_secret_enc"] == replaced["webhook_secret_enc"]
    new_only = BotRegistry(ring.db, TokenCipher(_current_key(settings)))
    assert new_only.decrypt_token(new_only.get_bot(bot.id)) == new_token


def test_a_failed_write_back_does_not_fail_the_read(
    old_registry: BotRegistry, ring: BotRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.bots.registry as registry_module

    bot = _create(old_registry)

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise gexc.ServiceUnavailable("firestore is down")

    monkeypatch.setattr(registry_module, "run_transaction", unavailable)
    assert ring.decrypt_token(ring.get_bot(bot.id)) == TOKEN
    assert not _current(ring, _raw(ring, bot.id)["token_enc"])  # moved on a later read


def test_an_unexpected_error_in_the_write_back_does_not_fail_the_read(
    old_registry: BotRegistry,
    ring: BotRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The write-back is best effort whatever it raises (here an error the client does not wrap): the
    token was decrypted, so the read succeeds; the log names the error's type, never the token."""
    import logging

    import shared.bots.registry as registry_module

    class TransportHiccup(Exception):
        pass

    bot = _create(old_registry)

    def hiccup(*args: Any, **kwargs: Any) -> Any:
        raise TransportHiccup(f"connection reset while sending {TOKEN}")

    monkeypatch.setattr(registry_module, "run_transaction", hiccup)
    caplog.set_level(logging.WARNING, logger="shared.bots.registry")
    assert ring.decrypt_token(ring.get_bot(bot.id)) == TOKEN
    assert not _current(ring, _raw(ring, bot.id)["token_enc"])
    [record] = [r for r in caplog.records if "not re-encrypted" in r.getMessage()]
    assert "TransportHiccup" in record.getMessage() and record.exc_info is None
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


def test_a_bot_started_after_the_rotation_registers_and_moves_to_the_new_key(
    bot_settings: Any, tg: FakeTelegram
) -> None:
    """The control plane reads the webhook secret and the token to register a bot: the re-encryption of
    what it read is not taken for a token replacement (the secret is the same), and the start succeeds."""
    db = firestore_client(bot_settings.project_id)
    token = tg.add_bot(username="rotated_bot")
    owner = Caller(user="ann@example.com")
    before = BotControl(bot_settings, BotRegistry(db, TokenCipher(OLD)))
    bot = before.create_bot(owner, {"platform": "telegram", "name": "Rotated", "token": token})
    secret = before.registry.webhook_secret(bot)

    ring = BotRegistry(db, TokenCipher(_current_key(bot_settings), previous=[OLD]))
    after = BotControl(bot_settings, ring, policy=RetryPolicy(attempts=3, backoff=0.01, max_wait=5.0))
    started = after.start_bot(owner, bot.id)
    assert started.status == "running", started.last_error
    hook = tg.webhook(token)
    assert hook is not None and hook.secret_token == secret
    raw = _raw(ring, bot.id)
    assert _current(ring, raw["token_enc"]) and _current(ring, raw["webhook_secret_enc"])


def _rotated_control(settings: Any) -> BotControl:
    ring = BotRegistry(
        firestore_client(settings.project_id), TokenCipher(_current_key(settings), previous=[OLD])
    )
    return BotControl(settings, ring, policy=RetryPolicy(attempts=3, backoff=0.01, max_wait=5.0))


def test_the_first_restart_after_the_rotation_is_a_restart(bot_settings: Any, tg: FakeTelegram) -> None:
    """Re-encrypting what the restart read changes the stored ciphertext, not the secret: the restart
    still forces deleteWebhook + setWebhook and is logged as a restart (not a silent no-op)."""
    token = tg.add_bot(username="restarted_bot")
    owner = Caller(user="ann@example.com")
    before = BotControl(
        bot_settings, BotRegistry(firestore_client(bot_settings.project_id), TokenCipher(OLD))
    )
    bot = before.create_bot(owner, {"platform": "telegram", "name": "Restarted", "token": token})
    assert before.start_bot(owner, bot.id).status == "running"
    calls_before = len(tg.calls_for(token))

    after = _rotated_control(bot_settings)
    restarted = after.restart_bot(owner, bot.id)
    assert restarted.status == "running", restarted.last_error
    methods = [c.method for c in tg.calls_for(token)[calls_before:]]
    hooks = [m for m in methods if m in ("deleteWebhook", "setWebhook")]
    assert hooks == ["deleteWebhook", "setWebhook"], methods  # forced: delete, then set
    latest = after.registry.activity(bot.id).items[0]
    assert latest.kind == "restarted", (latest.kind, latest.message)
    hook = tg.webhook(token)
    assert hook is not None and hook.secret_token == after.registry.webhook_secret(
        after.registry.get_bot(bot.id)
    )
    raw = _raw(after.registry, bot.id)
    assert _current(after.registry, raw["token_enc"]) and _current(after.registry, raw["webhook_secret_enc"])


def test_the_first_start_of_a_stopped_bot_after_the_rotation_is_a_start(
    bot_settings: Any, tg: FakeTelegram
) -> None:
    token = tg.add_bot(username="started_bot")
    owner = Caller(user="ann@example.com")
    before = BotControl(
        bot_settings, BotRegistry(firestore_client(bot_settings.project_id), TokenCipher(OLD))
    )
    bot = before.create_bot(owner, {"platform": "telegram", "name": "Started", "token": token})

    after = _rotated_control(bot_settings)
    started = after.start_bot(owner, bot.id)
    assert started.status == "running", started.last_error
    latest = after.registry.activity(bot.id).items[0]
    assert latest.kind == "started", (latest.kind, latest.message)
    assert len(tg.calls_for(token, "setWebhook")) == 1


def test_botrunners_reconcile_moves_every_bot_it_can_decrypt(bot_settings: Any, tg: FakeTelegram) -> None:
    """The reconcile botrunner runs at start-up and every 10 minutes reads every bot's token (running or
    stopped): after a rotation it moves them all without a message having to arrive."""
    from shared.bots.reconcile import reconcile_all

    db = firestore_client(bot_settings.project_id)
    owner = Caller(user="ann@example.com")
    policy = RetryPolicy(attempts=3, backoff=0.01, max_wait=5.0)
    before = BotControl(bot_settings, BotRegistry(db, TokenCipher(OLD)), policy=policy)
    running = before.create_bot(owner, {"platform": "telegram", "name": "On", "token": tg.add_bot("on_bot")})
    before.start_bot(owner, running.id)
    off = tg.add_bot("off_bot")
    stopped = before.create_bot(owner, {"platform": "telegram", "name": "Off", "token": off})

    ring = BotRegistry(db, TokenCipher(_current_key(bot_settings), previous=[OLD]))
    report = reconcile_all(BotControl(bot_settings, ring, policy=policy))
    assert (report.checked, report.ok, report.failed) == (2, 2, {})
    for bot in (running, stopped):
        raw = _raw(ring, bot.id)
        assert _current(ring, raw["token_enc"]) and _current(ring, raw["webhook_secret_enc"]), bot.name
    assert ring.get_bot(running.id).status == "running"


# --- askbase bots rekey ----------------------------------------------------------------------------


@pytest.fixture
def rotated_env(emulators, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """get_settings() (what the command reads) with the old key kept as a previous key."""
    monkeypatch.setenv("ASKBASE_TOKEN_KEYS_PREVIOUS", _b64(OLD))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_rekey_moves_every_bot_and_reports_counts(
    rotated_env: Any, old_registry: BotRegistry, ring: BotRegistry
) -> None:
    old_bots = [_create(old_registry, bot_user_id=n) for n in (1001, 1002)]
    fresh = _create(ring, bot_user_id=1003)
    lost = _create(BotRegistry(ring.db, TokenCipher(OTHER)), bot_user_id=1004)  # a key nobody kept

    result = CliRunner().invoke(bots_group, ["rekey", "--json"])
    assert result.exit_code == 1, result.output  # a bot still needs its owner
    report = json.loads(result.stdout)  # JSON alone on stdout
    assert report == {
        "key_id": key_id(_current_key(rotated_env)),
        "bots": 4,
        "rekeyed": 2,
        "current": 1,
        "undecryptable": [
            {"bot": lost.id, "field": field, "key_id": key_id(OTHER), "key_configured": False}
            for field in ("token", "webhook_secret")
        ],
        "failed": [],
    }
    new_only = BotRegistry(ring.db, TokenCipher(_current_key(rotated_env)))
    for bot in [*old_bots, fresh]:
        assert new_only.decrypt_token(new_only.get_bot(bot.id)) == TOKEN
        assert new_only.webhook_secret(new_only.get_bot(bot.id))
    for blob in (lost.token_enc, TOKEN):
        assert blob not in result.output

    again = CliRunner().invoke(bots_group, ["rekey"])
    assert again.exit_code == 1
    assert "0 re-encrypted" in again.output and "3 already" in again.output and lost.id in again.output
    ring.delete_bot(lost.id)
    clean = CliRunner().invoke(bots_group, ["rekey", "--json"])
    assert clean.exit_code == 0 and json.loads(clean.stdout)["current"] == 3


@pytest.fixture
def unrotated_env(emulators, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """get_settings() with the new key only: the operator forgot ASKBASE_TOKEN_KEYS_PREVIOUS."""
    monkeypatch.delenv("ASKBASE_TOKEN_KEYS_PREVIOUS", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_rekey_without_the_old_key_names_the_key_it_needs_not_the_owners(
    unrotated_env: Any, old_registry: BotRegistry
) -> None:
    """Forgetting ASKBASE_TOKEN_KEYS_PREVIOUS is not "every owner must re-enter the token": each bot is
    listed with the field that failed and the id of the key that sealed it, which the operator can add."""
    bots = [_create(old_registry, bot_user_id=n) for n in (2001, 2002)]
    result = CliRunner().invoke(bots_group, ["rekey", "--json"])
    assert result.exit_code == 1, result.output
    listed = json.loads(result.stdout)["undecryptable"]
    assert listed == [
        {"bot": bot.id, "field": field, "key_id": key_id(OLD), "key_configured": False}
        for bot in bots
        for field in ("token", "webhook_secret")
    ]

    text = CliRunner().invoke(bots_group, ["rekey"])
    assert text.exit_code == 1
    for bot in bots:
        assert f"{bot.id} token: sealed by token key {key_id(OLD)}, which is not configured" in text.output
    assert "ASKBASE_TOKEN_KEYS_PREVIOUS" in text.output
    assert _b64(OLD) not in text.output and TOKEN not in text.output


def test_rekey_says_which_field_cannot_be_decrypted(
    rotated_env: Any, old_registry: BotRegistry, ring: BotRegistry
) -> None:
    """A bot whose token is fine but whose webhook secret no configured key opens is reported as such
    (not as "its stored token cannot be decrypted")."""
    bot = _create(ring, bot_user_id=2003)
    bad = TokenCipher(OTHER).encrypt("some-secret", f"bots/{bot.id}/webhook_secret")
    ring.db.collection("bots").document(bot.id).update({"webhook_secret_enc": bad})
    tampered = _create(old_registry, bot_user_id=2004)  # its key is kept, but the token was altered
    forged = tampered.token_enc[:-6] + ("AAAAAA" if not tampered.token_enc.endswith("AAAAAA") else "BBBBBB")
    ring.db.collection("bots").document(tampered.id).update({"token_enc": forged})

    result = CliRunner().invoke(bots_group, ["rekey", "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["undecryptable"] == [
        {"bot": bot.id, "field": "webhook_secret", "key_id": key_id(OTHER), "key_configured": False},
        {"bot": tampered.id, "field": "token", "key_id": key_id(OLD), "key_configured": True},
    ]
    text = CliRunner().invoke(bots_group, ["rekey"]).output
    assert f"{bot.id} webhook secret: sealed by token key {key_id(OTHER)}, which is not configured" in text
    assert f"{tampered.id} token: does not decrypt with token key {key_id(OLD)}" in text
    assert f"{bot.id} token" not in text and f"{tampered.id} webhook secret" not in text


# --- the rotation recipe only ever moves a secret forward ------------------------------------------

_FIELDS = (("token_enc", "token"), ("webhook_secret_enc", "webhook_secret"))


def _kid(blob: str) -> str:
    return blob.split(":")[1] if blob.startswith("v2:") else "v1"


def _run_phases(db: Any, phases: list[Any], bots: list[Bot], rank: dict[str, int], ring: TokenCipher) -> None:
    """Every configuration of each phase (a rollout: old and new revision side by side) reads every bot,
    in both orders; assert that a stored secret whose value did not change never moves to an older key."""
    from shared.bots.secrets import DecryptionError

    seen: dict[tuple[str, str], tuple[str, int]] = {}

    def observe() -> None:
        for bot in bots:
            raw = _raw(BotRegistry(db, ring), bot.id)
            for name, context in _FIELDS:
                value = ring.decrypt(raw[name], f"bots/{bot.id}/{context}")
                now = rank[_kid(raw[name])]
                before = seen.get((bot.id, name))
                if before is not None and before[0] == value:
                    assert now >= before[1], f"{bot.id} {name} moved back to an older key"
                seen[bot.id, name] = (value, now)

    observe()
    for phase in phases:
        for serving in (phase, phase[::-1]):
            for registry in serving:
                for bot in bots:
                    read = registry.get_bot(bot.id)
                    # A revision without the new key fails on what was moved: the window, not a move.
                    with contextlib.suppress(DecryptionError):
                        registry.decrypt_token(read)
                    observe()


def test_the_documented_rotation_only_ever_moves_secrets_forward(db: Any, settings: Any) -> None:
    """docs/operations.md: tokenKey=NEW with previousTokenKeys=OLD in one deploy, ``rekey`` once traffic
    has moved, then previousTokenKeys dropped. No configuration that ever serves re-seals a secret under
    an older key, so after the rekey nothing needs OLD whatever still ran meanwhile."""
    new = _current_key(settings)
    rank = {"v1": 0, key_id(OLD): 1, key_id(new): 2}
    ring = TokenCipher(new, previous=[OLD])
    before, rotated, after = (
        BotRegistry(db, TokenCipher(OLD)),
        BotRegistry(db, TokenCipher(new, previous=[OLD])),
        BotRegistry(db, TokenCipher(new)),
    )
    bots = [_create(before, bot_user_id=n) for n in (3001, 3002)]
    # The rollout of the rotation, then traffic on the new revision alone.
    _run_phases(db, [[before], [before, rotated], [rotated]], bots, rank, ring)
    for bot in bots:
        assert rotated.rekey(rotated.get_bot(bot.id)) in ("rekeyed", "current")
    # Dropping the old key rolls out; then the new key alone.
    _run_phases(db, [[rotated, after], [after]], bots, rank, ring)
    for bot in bots:
        raw = _raw(after, bot.id)
        assert all(_kid(raw[name]) == key_id(new) for name, _ in _FIELDS)
        assert after.decrypt_token(after.get_bot(bot.id)) == TOKEN


def test_a_process_listing_the_next_key_as_previous_would_move_secrets_back(db: Any, settings: Any) -> None:
    """Why the recipe never lists a key that is or will be current as a previous one: a process re-seals
    what its previous keys sealed, so one with tokenKey=OLD and previousTokenKeys=NEW (serving next to
    the rotated revision) moves NEW's ciphertexts back under OLD."""
    new = _current_key(settings)
    staged = BotRegistry(db, TokenCipher(OLD, previous=[new]))
    rotated = BotRegistry(db, TokenCipher(new, previous=[OLD]))
    bot = _create(rotated, bot_user_id=3003)
    staged.decrypt_token(staged.get_bot(bot.id))
    assert _kid(_raw(staged, bot.id)["token_enc"]) == key_id(OLD)


def test_the_rotation_recipe_never_lists_the_new_key_as_a_previous_one() -> None:
    """The rule above, in docs/operations.md: previousTokenKeys holds retired keys only."""
    import re
    from pathlib import Path

    text = Path(__file__).resolve().parents[1].joinpath("docs", "operations.md").read_text()
    section = text[text.index("## Rotating the token key") :]
    section = section[: section.index("\n## ", 1)]
    assert not re.search(r"previousTokenKeys\W{0,8}\$NEW", section), "previousTokenKeys set to $NEW"
    assert re.search(r"previousTokenKeys\W{0,8}\$OLD", section)
    assert "traffic" in section and "rekey" in section
