"""Model interfaces, settings and the adapter registry."""
