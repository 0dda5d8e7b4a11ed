"""vaelab's version, in a module of its own: the package's `__init__` imports the whole API, so a lower layer
that needs the version (the checkpoint writer) must not import the package to get it."""

__version__ = "0.1.0"
