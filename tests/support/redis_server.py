"""Session fixtures for a real redis-server (see adapters/redis)."""
