"""Engines: external frameworks segkit drives for several tasks (inference and training together)."""
