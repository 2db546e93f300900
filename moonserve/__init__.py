"""Moonserve: the Model Studio Kimi API, served on your own machines."""

__version__ = "0.1.0"
