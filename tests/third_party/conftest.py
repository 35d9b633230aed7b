# The acme package is a fixture: tests/test_third_party_adapter.py installs it into a
# separate environment and runs its tests there, never in this one.
collect_ignore = ["acme"]
