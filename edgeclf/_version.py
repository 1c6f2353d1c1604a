"""The package version, in a leaf of its own so every layer can stamp it into what it writes."""
__version__ = "0.2.0"
