"""`maestro update DIR --throttle N`: maestrowf's update of a running study, without a conductor.

The throttle is the scheduler's own job-array limit (Slurm's ArrayTaskThrottle, LSF's job slot
limit), so it is changed where the scheduler allows it: on every job array of the study that is
still queued or running. The backend builds the command and reads its answer; `runner` runs it.
What cannot be changed after submission (the restart limit, the local runner's -j, Flux) is an
error; what has nothing left to act on (a conductor's poll interval, a study that has ended) is a
one-line note."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from . import runner
from .backends import get_backend
from .errors import MaestroCompileError, SchedulerCommandError
from .runner import Command
from .states import ACTIVE
from .status import collect
from .studydir import StudyDir


class UpdateError(MaestroCompileError):
    """The change asked for cannot be made to this study (exit 1)."""


@dataclass
class Outcome:
    messages: List[str] = field(default_factory=list)   # what was done (stdout)
    notes: List[str] = field(default_factory=list)      # what had nothing to do (one line each, stderr)


def update(study: StudyDir, throttle: Optional[int], rlimit: Optional[int], sleep: Optional[float]) -> Outcome:
    """Apply maestrowf's update options to one study; refuse before changing anything."""
    outcome = Outcome()
    if rlimit is not None:
        raise UpdateError(f"{study.path}: --rlimit cannot be changed after compiling: the restart limit is "
                          f"written into every job's script, which the scheduler already holds; compile the "
                          f"spec again with -r {rlimit} (or `maestro resubmit` after editing the scripts)")
    backend = get_backend(study.manifest.backend)
    if throttle is not None:
        _check_throttle(study, backend, throttle)
    if sleep is not None:
        outcome.notes.append(f"--sleep {sleep:g}: nothing to change: no conductor polls this study "
                             f"(the scheduler runs it); `run -fg -s S` sets how often maestro checks while waiting")
    if throttle is not None:
        _throttle(study, backend, throttle, outcome)
    return outcome


def _check_throttle(study: StudyDir, backend, throttle: int) -> None:
    if study.submission_lock() is None:
        raise UpdateError(f"{study.path}: the study has not been submitted; its throttle is written into "
                          f"submit.sh: compile the spec again with -t {throttle}")
    if backend.name == "local":
        if backend.runtime(study, {}).runner_alive:
            raise UpdateError(f"{study.path}: the local runner's limit (-j) is fixed while it runs; to change it, "
                              f"`maestro cancel` the study, then `maestro resubmit {study.path} -j {throttle}`")
        return
    if not hasattr(backend, "throttle_argv"):
        raise UpdateError(f"{study.path}: {backend.scheduler} has no job arrays, so the study's jobs have no "
                          f"throttle to change")
    if throttle < backend.throttle_min:
        raise UpdateError(f"{study.path}: --throttle {throttle}: {backend.scheduler} takes a limit of "
                          f"{backend.throttle_min} or more")


def _throttle(study: StudyDir, backend, throttle: int, outcome: Outcome) -> None:
    if backend.name == "local":
        outcome.notes.append(f"--throttle {throttle}: nothing to change: the study is no longer running")
        return
    ledger = study.ledger(backend.job_id)
    # an array task's ledger id (123_4, 123[5]) differs from the id of its array (123)
    tasks = {name: backend.query_id(e.job_id) for name, e in ledger.items() if backend.query_id(e.job_id) != e.job_id}
    if not tasks:
        outcome.notes.append(f"--throttle {throttle}: nothing to change: the study has no job array "
                             f"(only parameterized steps are submitted as arrays)")
        return
    # only arrays with tasks still waiting or running: a scheduler may accept the change on an
    # array that has ended (Slurm does, for a cancelled one), which would report a change that is none
    rows, _ = collect(study, backend)
    active = {row.name for row in rows if row.state in ACTIVE}
    arrays = sorted({array for name, array in tasks.items() if name in active}, key=lambda i: (len(i), i))
    env = backend.command_env(study)
    changed = []
    for array_id in arrays:
        argv = tuple(backend.throttle_argv(array_id, throttle))
        proc = runner.run_unchecked(Command(argv, backend.scheduler, env=env))
        result = backend.throttle_outcome(proc.returncode, proc.stderr)
        if result is None:
            raise SchedulerCommandError(argv, proc.returncode, proc.stdout, proc.stderr)
        if result:
            changed.append(array_id)
    program = backend.throttle_argv("X", throttle)[0]
    if not changed:
        outcome.notes.append(f"--throttle {throttle}: nothing to change: every job array of the study has ended")
        return
    limit = f"at most {throttle} task(s) of each array at once" if throttle else "no limit"
    outcome.messages.append(f"throttle of {len(changed)} job array(s) ({', '.join(changed)}) changed with "
                            f"{program}: {limit}")
