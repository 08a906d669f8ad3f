"""Flux integration. The bindings are imported lazily: fluxlite runs without them."""

from __future__ import annotations

from fluxlite.errors import FluxUnavailable

INSTALL_HINT = ("install the Flux Python bindings of your flux-core's version: pip install "
                "\"flux-python==$(flux version | awk '/^commands:/ {print $2}')\" ply")


def import_flux(job_api: bool = True):  # noqa: ANN201
    """The ``flux`` module, or FluxUnavailable with one line saying how to get it; with
    ``flux.job`` unless ``job_api`` is False (a pool worker: its imports cost every node
    tens of milliseconds of CPU)."""
    try:
        import flux  # type: ignore[import-not-found]

        if job_api:
            import flux.job  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as err:
        raise FluxUnavailable(f"the Flux Python bindings are not importable ({err}): "
                              f"{INSTALL_HINT}") from err
    return flux
