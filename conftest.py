"""Root conftest: fixtures that start the real servers the tests need (once per session).

Each server module lives in tests/support/ and starts its server lazily, on a free
loopback port, the first time a test asks for it, and stops it at the end.
"""

pytest_plugins = ["redis_server", "mongo_server"]
