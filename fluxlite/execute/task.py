"""The names the record and cluster modules import from here, kept where they were."""

from fluxlite.execute.base import (  # noqa: F401
    RUSAGE_FIELDS,
    ExitStatus,
    SignalEvent,
    TaskResult,
    rusage_dict,
    signal_name,
)
from fluxlite.execute.local import (  # noqa: F401
    LocalLauncher,
    TaskController,
    become_subreaper,
    has_children,
    kill_descendants,
    reap_all,
)
