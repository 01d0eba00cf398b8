"""botrunner keeps its settings in one place, and a blueprint registered on an app without them fails
at once instead of reading the environment's settings on the first request."""

from __future__ import annotations

import pytest
from flask import Flask

from services.botrunner import control_api, worker
from services.botrunner.app import create_app
from shared.config import Settings


def test_settings_are_stored_once(settings: Settings) -> None:
    app = create_app(settings, control=object(), reconcile_on_start=False)  # type: ignore[arg-type]
    assert app.extensions[control_api.SETTINGS_KEY] is settings
    assert [v for v in app.config.values() if v is settings] == []
    assert [k for k, v in app.extensions.items() if v is settings] == [control_api.SETTINGS_KEY]
    with app.app_context():
        assert worker._settings(app) is settings


@pytest.mark.parametrize("blueprint", [worker.bp, control_api.bp])
def test_a_blueprint_on_an_app_without_settings_fails_at_once(blueprint) -> None:
    with pytest.raises(RuntimeError, match="settings"):
        Flask("no-settings").register_blueprint(blueprint)
