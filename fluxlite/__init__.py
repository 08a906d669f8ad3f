"""fluxlite: a job runtime for workflow tasks on Flux-scheduled systems."""

from __future__ import annotations

from fluxlite.errors import FluxliteError, SpecError
from fluxlite.version import __version__

__all__ = ["FluxliteError", "JobSpec", "SpecError", "__version__", "run_job"]


def __getattr__(name: str) -> object:
    # Imported lazily so that `import fluxlite` stays cheap for the command line.
    if name == "JobSpec":
        from fluxlite.spec import JobSpec

        return JobSpec
    if name == "run_job":
        from fluxlite.runner import run_job

        return run_job
    raise AttributeError(name)
