"""How each Cloud Run service is started: the one copy of its command line.

The Cloud Run service spec sets it explicitly (``infra/program.py``), ``tests/test_infra.py`` holds each
Dockerfile's ``CMD`` to it, and the production-shaped local stack (``shared/devstack/production.py``)
runs exactly it. No Pulumi import here: the local stack loads this module too.
"""

from __future__ import annotations

# The threads one instance serves requests with: one gthread gunicorn worker each. qa's come from its
# gunicorn config (``GUNICORN_THREADS``, default 8, which infra does not set), botrunner's from its
# command below. Cloud Run's per-instance concurrency may not exceed them (``infra/config.py``): the
# requests beyond would wait inside the instance, on their request timeout, while Cloud Run counted
# them as served and started no other instance.
THREADS: dict[str, int] = {"qa": 8, "botrunner": 16}

START_COMMANDS: dict[str, tuple[str, ...]] = {
    "qa": ("gunicorn", "--config", "services/qa/gunicorn.conf.py", "services.qa.wsgi:app"),
    # One process, many threads (see services/botrunner/Dockerfile); sh expands ${PORT}.
    "botrunner": (
        "sh",
        "-c",
        f"exec gunicorn --bind :${{PORT}} --workers 1 --threads {THREADS['botrunner']} --worker-class gthread"
        " --timeout 0 --graceful-timeout 20 services.botrunner.wsgi:app",
    ),
}
