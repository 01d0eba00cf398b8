"""Gunicorn settings for the Q&A service on Cloud Run (and ``askbase dev``).

One worker process with threads: the index copy (tens of MB at 10k chunks) is loaded once and shared by
every thread; retrieval releases the GIL in onnxruntime and SQLite. Cloud Run scales out with instances.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Cloud Run enforces the request timeout; gunicorn's would only kill slow snapshot restores.
timeout = 0
graceful_timeout = 20
keepalive = 30
preload_app = False
accesslog = None
errorlog = "-"
# gunicorn 27's control socket serves `gunicornc` commands nobody sends on Cloud Run. It costs the master
# a thread running an asyncio loop at every start, and its default path, $HOME/.gunicorn/, is one the
# image's user cannot create (its home, /app, is root-owned), so the start only logged a warning.
control_socket_disable = True
