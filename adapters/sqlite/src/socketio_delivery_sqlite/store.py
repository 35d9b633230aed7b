"""Placeholder: implemented in its issue."""


class SQLiteEventStore:
    pass
