"""The serving layer (``[serve]`` extra): a web page, an MJPEG stream and a JSON API for one model.

``app`` holds the routes and guards, ``live`` the shared camera loop, ``samples`` the feedback store,
``metrics`` the Prometheus counters, ``ratelimit`` the per-client upload limit, ``transport`` the socket and
the HTTP connection rules (header deadline, connection cap), ``server`` starts it all. Nothing below this
layer imports it.
"""
from edgeclf.serve.app import ServeOptions, create_app
from edgeclf.serve.server import serve

__all__ = ["serve", "create_app", "ServeOptions"]
