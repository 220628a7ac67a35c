"""Storage: one SQLite database reached through repositories (`:memory:` for unit tests)."""
