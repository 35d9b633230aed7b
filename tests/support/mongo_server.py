"""Session fixtures for a real MongoDB-compatible server, SecantusDB (see adapters/mongodb)."""
