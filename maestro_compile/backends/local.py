"""The local backend: the study runs on this machine under a detached runner (submit.sh starts
runner.py, a Python script of the standard library only)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import StudyDirError, SubmitError
from ..model import File, Node, Study
from ..plan import Plan
from ..render import render_template, template_source
from ..states import LedgerEntry, Markers, Runtime, State, Verdict
from .. import studydir
from ..studydir import StudyDir
from ..tokens import LAUNCHER_TOKEN
from .base import Backend


STOP_SECONDS = 10     # how long `maestro cancel` waits for what it stopped to be gone


class LocalBackend(Backend):
    name = "local"
    script_suffix = ".sh"
    scheduler = "the local runner"
    has_queue = False    # no queue limit to fit: the runner runs nodes one by one, bundles mean nothing

    def expand_launcher(self, study: Study, node: Node, text: str, key: str = "cmd") -> str:
        # No scheduler, no parallel launcher: $(LAUNCHER) and $(LAUNCHER)[...] become nothing.
        return LAUNCHER_TOKEN.sub("", text)

    def render_study(self, study: Study, plan: Plan) -> Tuple[Dict[str, File], Dict[str, Any]]:
        submit = render_template("local/submit.sh.j2", study_name=study.spec.name)
        return {studydir.SUBMIT_SCRIPT: File(submit, executable=True),
                studydir.LOCAL_RUNNER: File(template_source("local/runner.py"))}, {}

    # --- run time ---
    def submit_args(self, jobs: int) -> List[str]:
        return ["--jobs", str(jobs)]

    def runtime(self, study: StudyDir, ledger: Dict[str, LedgerEntry]) -> Runtime:
        pid = study.runner_pid()
        done = study.runner_done()
        lock = study.submission_lock()
        first = lock.split()[0] if lock else ""
        alive = bool(pid) and done is None and _alive(pid)
        return Runtime(
            submitted_at=float(first) if first.isdigit() else (0.0 if lock is not None else None),
            cancelled=study.is_cancelled(),
            runner_pid=pid,
            runner_alive=alive,
            runner_done=done,
            # a runner killed with SIGKILL leaves its steps running; only then is it worth a look
            runner_leftovers=_leftovers(study, pid) if pid and done is None and not alive else (),
            # after `maestro resubmit`: the nodes the latest runner runs, and whether an earlier run
            # was cancelled (resubmit keeps .maestro/cancelled as cancelled.before-resubmit-<K>)
            runner_nodes=study.runner_nodes(),
            cancelled_before=study.cancelled_before(),
        )

    def judge(self, name: str, markers: Markers, in_ledger: bool, runtime: Runtime) -> Verdict:
        """A node's state from its markers and the runner's state."""
        alive, cancelled = runtime.runner_alive, runtime.cancelled
        if runtime.runner_nodes is not None and name not in runtime.runner_nodes:
            # not run again by the latest runner: its state is that of the run that ran it
            alive, cancelled = False, cancelled or runtime.cancelled_before
        if not runtime.submitted:
            return Verdict(State.INITIALIZED)
        if "EXIT_CODE" in markers:
            if markers["EXIT_CODE"] == "0":
                return Verdict(State.FINISHED)
            if cancelled and "SIGNAL" in markers:
                return Verdict(State.CANCELLED, "study cancelled while the step ran")
            return Verdict(State.FAILED, f"exit code {markers['EXIT_CODE']}")
        if "SKIPPED" in markers:
            return Verdict(State.CANCELLED, markers.get("REASON", "an ancestor failed"))
        if "CANCELLED" in markers:
            return Verdict(State.CANCELLED, "study cancelled before the step started")
        if "START" in markers:
            if alive:
                return Verdict(State.RUNNING)
            if _int(markers.get("JOB_ID")) in runtime.runner_leftovers:
                return Verdict(State.RUNNING, "its runner was killed; the step still runs (`maestro cancel` stops it)")
            if cancelled:
                return Verdict(State.CANCELLED, "study cancelled while the step ran")
            return Verdict(State.UNKNOWN, "the runner stopped before the step ended (killed or machine restarted?)")
        if alive:
            return Verdict(State.PENDING)
        if cancelled:
            return Verdict(State.CANCELLED, "study cancelled before the step started")
        return Verdict(State.UNKNOWN, "never started: the runner is not running")

    # --- maestro resubmit ---
    def render_resubmit(self, study: StudyDir, names: Sequence[str], layout: Dict[str, Any]) -> str:
        if "--nodes FILE" not in study.submit_script_text():
            raise SubmitError("this study's submit.sh cannot run some nodes again (it was compiled by a version of "
                              "maestro_compile without `maestro resubmit`); compile the study again to resubmit it")
        return render_template("local/resubmit.sh.j2", scheduler=self.scheduler, submit_command="",
                               cancel_command="", names=list(names), **layout)

    def activity(self, runtime: Runtime) -> Optional[str]:
        if runtime.runner_alive:
            return f"the study's runner (pid {runtime.runner_pid}) is still running"
        if runtime.runner_leftovers:
            return (f"its runner (pid {runtime.runner_pid}) was killed, but {len(runtime.runner_leftovers)} "
                    f"process(es) of its steps still run (pids {_pids(runtime.runner_leftovers)})")
        return None

    def cancel(self, study: StudyDir) -> str:
        state = self.runtime(study, {})
        if not state.submitted:
            raise StudyDirError(f"{study.path}: the study has not been submitted; nothing to cancel")
        if not state.runner_alive:
            if state.runner_leftovers:
                return self._stop_leftovers(study, state)
            return "nothing to cancel: the study is no longer running"
        pid = state.runner_pid
        study.mark_cancelled(int(time.time()))
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGTERM)  # the runner leads a group holding every step
            else:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return "nothing to cancel: the study is no longer running"
        if _within(STOP_SECONDS, lambda: not _alive(pid)):   # the runner marks unstarted steps, then exits
            return f"cancelled the study (runner pid {pid}): running steps stopped, the others will not start"
        raise SubmitError(f"the study's runner (pid {pid}) was asked to stop but still runs after {STOP_SECONDS} s; "
                          f"run `maestro cancel {study.path}` again, or stop it with `kill -9 -{pid}`")

    def _stop_leftovers(self, study: StudyDir, state: Runtime) -> str:
        """The runner was killed: stop what its steps left running (they share its process group)."""
        pid, leftovers = state.runner_pid, state.runner_leftovers
        study.mark_cancelled(int(time.time()))
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if _within(STOP_SECONDS, lambda: not _leftovers(study, pid)):
            return (f"cancelled the study: its runner (pid {pid}) was gone; stopped the {len(leftovers)} "
                    f"process(es) its steps left running; the other steps will not start")
        raise SubmitError(f"the processes the killed runner (pid {pid}) left running still run {STOP_SECONDS} s "
                          f"after a SIGTERM; stop them with `kill -9 -{pid}`")


def _leftovers(study: StudyDir, pid: int) -> Tuple[int, ...]:
    """The live processes of the runner's process group (it leads one when `maestro submit` started
    it). A group id is a pid and may be reused once the group is empty: the group counts as the
    study's only while one of its processes runs a file of the study (runner.py or a step script)."""
    members, ours = [], False
    inside = str(study.path) + os.sep
    for member, _, state, command in _processes(group=pid):
        if not state.startswith("Z"):
            members.append(member)
            ours = ours or inside in command
    return tuple(members) if ours else ()


def _processes(group: Optional[int] = None) -> Iterator[Tuple[int, int, str, str]]:
    """(pid, process group, state, command line) of every process, or of the members of `group`:
    from /proc where there is one, else from ps (none when neither is there: nothing is known to
    run). With /proc a command line is read only for the processes kept."""
    if os.path.isdir("/proc/self"):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            fields = _proc_stat(entry.name)
            if not fields or (group is not None and int(fields[2]) != group):
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue    # it ended meanwhile
            yield int(entry.name), int(fields[2]), fields[0], command
        return
    try:    # -ww: whole command lines, not cut at 80 columns
        listing = subprocess.run(["ps", "-e", "-ww", "-o", "pid=", "-o", "pgid=", "-o", "stat=", "-o", "args="],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    except OSError:
        return
    for line in listing.splitlines():
        fields = line.split(None, 3)
        if len(fields) >= 3 and (group is None or int(fields[1]) == group):
            yield int(fields[0]), int(fields[1]), fields[2], fields[3] if len(fields) == 4 else ""


def _proc_stat(pid) -> Optional[List[str]]:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...); None when
    there is no such file (the process ended, or no /proc here)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _within(seconds: float, done: Callable[[], bool]) -> bool:
    """Whether done() comes true within `seconds` (asked every 50 ms)."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _pids(pids: Sequence[int], shown: int = 10) -> str:
    listed = ", ".join(str(pid) for pid in pids[:shown])
    return listed + (f" and {len(pids) - shown} more" if len(pids) > shown else "")


def _int(text: Optional[str]) -> Optional[int]:
    return int(text) if text and text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); treat it as gone
    fields = _proc_stat(pid)
    return fields is None or fields[0] != "Z"
