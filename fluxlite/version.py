"""fluxlite's version, in a module of its own so that any module can name it without
importing the package's front (``fluxlite/__init__.py``, which reaches the runner)."""

__version__ = "0.1.0"
