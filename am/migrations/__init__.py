"""Alembic migrations of the geni-am store (env.py + versions/)."""
