"""The runner's strategy: what a front end decides of a job's run.

The runner (:class:`fluxlite.runner.Runner`) owns the order of the phases and everything that
every job does alike: staging, the one launch sequence, the signals, the records. A strategy
decides where front ends differ: PegasusLite's (``fluxlite run`` and a cluster's JSON task,
:class:`fluxlite.pegasus.lite.PegasusLite`) and pegasus-kickstart's
(:class:`fluxlite.pegasus.kickstart.KickstartStrategy`).

The runner calls, in this order: :meth:`RunStrategy.attach` once when it is made;
:meth:`~RunStrategy.prepare` before anything is created; :meth:`~RunStrategy.workdir` in the
workdir phase; (stage-in); :meth:`~RunStrategy.around_task`, which runs the task with the
runner's ``run_task`` (that asks :meth:`~RunStrategy.stdio`); (stage-out);
:meth:`~RunStrategy.judge`; then, however the job went, :meth:`~RunStrategy.failed` for
each failure that became its cause, :meth:`~RunStrategy.ending` before the records are
written and :meth:`~RunStrategy.finished` after them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from fluxlite.errors import SIGNAL_BASE
from fluxlite.execute.base import signal_name
from fluxlite.record.model import Phase

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from fluxlite.errors import FluxliteError
    from fluxlite.record.model import Record, StdioFile
    from fluxlite.runner import Runner
    from fluxlite.workdir import Workdir

#: the task's stdin, stdout and stderr (each a path, or a descriptor the strategy keeps)
#: and their entries in the record
TaskStdio = tuple[tuple["str | int", "str | int", "str | int"], "list[StdioFile]"]


class RunStrategy(ABC):
    """How one front end runs a job where front ends differ (see the module docstring for
    when the runner calls each method). ``job`` is the runner, set by :meth:`attach`: its
    ``spec``, ``opt``, ``record``, ``workdir`` and ``flux`` (the Flux context, or None),
    and what it offers a strategy: ``run_task``, ``run_command``, ``task_env`` and
    ``stop_signal``; :func:`judge_task` judges a task's end as both strategies do."""

    job: Runner

    def attach(self, job: Runner) -> None:
        """Bind the strategy to the runner of one job (called once, by its constructor)."""
        self.job = job

    @abstractmethod
    def prepare(self) -> str | None:
        """Before anything is created: refuse what cannot work, and resolve the executable
        when it can be resolved now (None: it is a file of the worker directory, resolved
        after stage-in). An ExecError makes the job's task fail to start."""

    @abstractmethod
    def workdir(self) -> Workdir:
        """The job's worker directory (the workdir phase)."""

    @abstractmethod
    def stdio(self) -> TaskStdio:
        """Where the task's stdin, stdout and stderr go, and their record entries."""

    @abstractmethod
    def around_task(self, exe: str) -> None:
        """Run the task (``job.run_task``) and whatever runs around it."""

    @abstractmethod
    def judge(self) -> bool:
        """Set the exit code the task's end makes; False when nothing was decided (the
        task succeeded, or never ran)."""

    @abstractmethod
    def failed(self, line: str, err: FluxliteError | None = None) -> None:
        """A failure became the job's cause: ``line`` says it (said now, or by
        :meth:`finished`); ``err`` is the error when a phase failed (None: a record could
        not be written)."""

    @abstractmethod
    def ending(self) -> None:
        """Before the records are written: what the record still needs."""

    @abstractmethod
    def finished(self, written: list[str], kept: str | None) -> None:
        """After the records: the lines that tell the job's end, and what is to be released.
        ``written`` are the record files written, ``kept`` the worker directory kept."""


def judge_task(rec: Record, stopped_fails: bool) -> bool:
    """Set the exit code the task's end makes; False when the task succeeded (or never
    ran) and nothing was decided. ``stopped_fails``: a task that handled a forwarded stop
    signal and exited 0 fails (128 + the signal: its work is not done); else its own exit
    code stands."""
    task = rec.task
    if task is None:
        return False
    if task.status.ok and task.terminated_by and (task.timed_out or stopped_fails):
        # The task caught the TERM (time limit or a signal to fluxlite) and exited
        # cleanly, typically after saving a checkpoint: its work is not done, so the job
        # must not count as a success; a rerun resumes from the checkpoint.
        rec.exit_code = SIGNAL_BASE + task.terminated_by
        rec.error = rec.error or (f"task stopped by {signal_name(task.terminated_by)}"
                                  f" ({'time limit' if task.timed_out else 'signal'})")
    elif not task.status.ok:
        rec.exit_code = task.status.code
        rec.error = rec.error or task.status.describe()
    else:
        return False
    rec.failed_phase = rec.failed_phase or Phase.TASK
    return True
