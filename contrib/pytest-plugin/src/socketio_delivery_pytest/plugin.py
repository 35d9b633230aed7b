"""pytest plugin: fixtures (filled in by its issue)."""
