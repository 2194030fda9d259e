"""The `lem` command line."""
