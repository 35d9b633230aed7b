"""Placeholder: implemented in its issue."""


class MongoEventStore:
    pass
