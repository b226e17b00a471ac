"""`maestro submit`: run the study's submit.sh as a transaction, and recover from one that was
interrupted (kill -9, a lost controller, a machine that restarted) with the tool alone.

submit.sh leaves these marks in .maestro/: `submitted` (the lock, naming its owner), `queued`
(every job is queued and recorded; the roots are still held) and `released` (done). From them:

- no lock: a first submission; run submit.sh.
- released: submitted once already; refused.
- lock whose owner still runs: a submission in progress; refused.
- queued, not released, owner gone: everything is queued; adopt it by releasing the held roots.
- not queued, owner gone: a partial submission that nothing ran from (its roots are held until
  the release); cancel every job of it (ledger and tag), check, set it aside, submit again.
"""
from __future__ import annotations

import time
from typing import List

from . import runner
from .backends import get_backend
from .backends.scheduled import ScheduledBackend
from .errors import SubmitError
from .studydir import StudyDir, Submission


def submit(study: StudyDir, jobs: int) -> str:
    """Submit the study (or finish an interrupted submission of it); what to tell the user."""
    backend = get_backend(study.manifest.backend)
    if not isinstance(backend, ScheduledBackend):
        return run_submit_script(study, backend, jobs)   # the local submit.sh guards its own run
    record = study.submission()
    notes: List[str] = []
    if record.locked:
        if record.released:
            raise SubmitError(f"study {study.path} was already submitted (see {study.state_dir}/submitted and "
                              f"jobs.tsv); it is not submitted twice. Use `maestro resubmit` to run failed steps "
                              f"again")
        if record.owner_alive():
            raise SubmitError(f"a submission of {study.path} is in progress (pid {record.pid} on {record.host}); "
                              f"wait for it to end")
        if record.queued:
            return adopt(study, backend)
        notes.append(recover(study, backend, record))
    output = run_submit_script(study, backend, jobs)
    return "\n".join(notes + [output])


def run_submit_script(study: StudyDir, backend, jobs: int) -> str:
    env = backend.command_env(study) if isinstance(backend, ScheduledBackend) else None
    return runner.run_script(study.submit_script, study.path, backend.submit_args(jobs), ledger=study.ledger_path,
                             nodes=len(study.manifest.nodes), env=env)


def adopt(study: StudyDir, backend: ScheduledBackend) -> str:
    """Every job was queued before the submission stopped: release the roots it had not released."""
    ledger = study.ledger(backend.job_id)
    roots = sorted({backend.query_id(ledger[name].job_id) for name, info in study.manifest.nodes.items()
                    if not info.depends and name in ledger and not backend.keeps_held(study, name)})
    held = backend.still_active(study, roots)
    argv = backend.release_argv(held) if held else None
    if argv:
        proc = runner.run_unchecked(runner.Command(tuple(argv), backend.scheduler, env=backend.command_env(study)))
        if proc.returncode != 0:
            raise SubmitError(f"the interrupted submission of {study.path} queued every job but {argv[0]} could "
                              f"not release its {len(held)} held root job(s): {proc.stderr.strip() or proc.stdout}")
    study.mark_released(int(time.time()))
    return (f"the submission of {study.path} was interrupted after every job was queued: adopted its "
            f"{len(ledger)} recorded node(s) and released {len(held)} held root job(s); nothing was submitted twice")


def recover(study: StudyDir, backend: ScheduledBackend, record: Submission) -> str:
    """A partial submission: cancel all of it (its roots were held, so none of it ran), check, and
    set it aside so that submit.sh can run again."""
    ids = backend.study_jobs(study)
    active = backend.still_active(study, ids) if ids else []
    if active:
        backend.cancel_jobs(study, active)
    study.set_aside_failed_attempt(int(time.time()))
    why = ("its rollback could not confirm the cancel" if record.unconfirmed
           else f"it stopped (pid {record.pid} is gone)")
    return (f"recovered the interrupted submission of {study.path}: {why}; cancelled its {len(active)} queued "
            f"job(s) and set its ledger aside in .maestro/; submitting again")
