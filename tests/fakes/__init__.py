"""Fake platform servers for tests: real HTTP on 127.0.0.1 with keep-alive (uvicorn in a thread).

* :mod:`tests.fakes.telegram_api` — :class:`FakeTelegram`, the Bot API (getMe, webhooks, sendMessage,
  getUpdates) plus ``send_update`` to deliver updates to the registered webhook.
* :mod:`tests.fakes.discord_api` — :class:`FakeDiscord`, applications, commands, the interactions
  endpoint (verified with a signed PING like Discord does) and ``deliver`` of Ed25519-signed
  interactions.
"""
