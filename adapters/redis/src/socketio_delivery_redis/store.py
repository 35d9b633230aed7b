"""Placeholder: implemented in its issue."""


class RedisEventStore:
    pass
