"""Benchmarks for duban at county, city and province scale, on SQLite and PostgreSQL.

``python -m bench`` runs them and prints one table (see ``bench/README.md``).
Everything is generated deterministically from the bundled 2024 notice; no
network beyond loopback (a fake Telegram Bot API server) is used.
"""
