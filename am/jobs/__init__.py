"""Jobs: the idempotent job body (runner), the queue protocol, and the Celery layer."""
