"""The demo: the whole pipeline on built-in data through the public API, ending in a report a newcomer can read."""
from edgeclf.demo.pipeline import demo

__all__ = ["demo"]
