"""gunicorn's settings for Prefhub: `gunicorn -c config/gunicorn.py config.wsgi` (the Dockerfile
and docker-compose.yml run this). Environment: WEB_CONCURRENCY (worker processes, default 4),
GUNICORN_BIND (default 0.0.0.0:8000), GUNICORN_TIMEOUT (seconds, default 300).

Sync workers: a worker serves one request at a time and closes the connection after the answer,
so each request goes to whichever worker is free next (one queue, the listening socket's). With
keep-alive workers (gthread) a connection stays with the worker that accepted it, and workers
that happen to hold more annotators' connections answer them slower: in bench/assign.py at 32
annotators on two cores that made p95 latency 2-4 x p50, against ~1.3 x with sync workers (numbers
in bench/README.md, "Assignment"). Put a reverse proxy in front for TLS and slow clients; it keeps
the browsers' connections alive and opens one to gunicorn per request.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "sync"
# Each worker is one request at a time and one database connection (max_connections!): on two
# cores 3-4 kept both busy while others waited on PostgreSQL.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# A synchronous API import runs inside its request.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "300"))
accesslog = "-"
