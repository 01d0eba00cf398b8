"""How each Cloud Run service is started: the one copy of its command line.

The Cloud Run service spec sets it explicitly (``infra/program.py``), ``tests/test_infra.py`` holds each
Dockerfile's ``CMD`` to it, and the production-shaped local stack (``shared/devstack/production.py``)
runs exactly it. No Pulumi import here: the local stack loads this module too.
"""

from __future__ import annotations

START_COMMANDS: dict[str, tuple[str, ...]] = {
    "qa": ("gunicorn", "--config", "services/qa/gunicorn.conf.py", "services.qa.wsgi:app"),
    # One process, many threads (see services/botrunner/Dockerfile); sh expands ${PORT}.
    "botrunner": (
        "sh",
        "-c",
        "exec gunicorn --bind :${PORT} --workers 1 --threads 16 --worker-class gthread --timeout 0"
        " --graceful-timeout 20 services.botrunner.wsgi:app",
    ),
}
