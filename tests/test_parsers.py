"""The status parsers fed with recorded scheduler output (tests/data/<scheduler>/, see its README.md).

Slurm 22.05.8 and flux-core 0.88.0 files were captured from real instances on the test machine; the
LSF 10.1 files are documentation-derived (LSF cannot run here). Each test names the job ids in its
file and what the parser must make of them: (native state, reason, exit code) per job, and the state
the backend maps that to.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from maestro_compile.backends import flux, lsf, pbs, slurm
from maestro_compile.backends.flux import FluxBackend
from maestro_compile.backends.lsf import LsfBackend
from maestro_compile.backends.pbs import PbsBackend
from maestro_compile.backends.slurm import SlurmBackend

DATA = Path(__file__).parent / "data"


def read(scheduler: str, name: str) -> str:
    return (DATA / scheduler / name).read_text(encoding="utf-8")


def fields(native):
    """(state, reason, exit code) of a parsed job, whether the parser returns a tuple or a record."""
    return (native.state, native.reason, native.exit_code) if hasattr(native, "state") else tuple(native)


def text(state) -> str:
    """A mapped state as text, whether it is a string or an Enum."""
    return str(getattr(state, "value", state))


def check(parsed, expected, backend):
    """parsed: the parser's dict; expected: {job id: ((state, reason, exit code), mapped state)}."""
    assert sorted(parsed) == sorted(expected)
    for job_id, (native, mapped) in expected.items():
        assert fields(parsed[job_id]) == native, job_id
        assert text(backend.native_state(parsed[job_id])) == mapped, job_id


# --- Slurm 22.05.8: sacct -X -P -n -j IDS --format=JobID,State,Reason,ExitCode ---

SACCT = {
    "sacct-22.05-completed.txt": {"1": (("COMPLETED", "None", "0:0"), "FINISHED")},
    "sacct-22.05-failed.txt": {"2": (("FAILED", "None", "3:0"), "FAILED")},
    "sacct-22.05-running.txt": {"3": (("RUNNING", "None", "0:0"), "RUNNING")},
    # scancel of a running job: the state column carries the uid that cancelled it
    "sacct-22.05-cancelled.txt": {"3": (("CANCELLED by 0", "None", "0:0"), "CANCELLED")},
    "sacct-22.05-timeout.txt": {"4": (("TIMEOUT", "None", "0:0"), "TIMEDOUT")},
    "sacct-22.05-held.txt": {"5": (("PENDING", "JobHeldUser", "0:0"), "PENDING")},
    "sacct-22.05-dependency.txt": {"6": (("RUNNING", "None", "0:0"), "RUNNING"),
                                   "7": (("PENDING", "Dependency", "0:0"), "PENDING")},
    # 8 failed; 9 (--kill-on-invalid-dep=yes) was cancelled by Slurm, 10 (=no) stays pending.
    # accounting keeps the plain "Dependency" reason where squeue says DependencyNeverSatisfied
    "sacct-22.05-dependency-never-satisfied.txt": {"8": (("FAILED", "None", "1:0"), "FAILED"),
                                                   "9": (("CANCELLED", "Dependency", "0:0"), "CANCELLED"),
                                                   "10": (("PENDING", "Dependency", "0:0"), "PENDING")},
    # a held array is one row "11_[0-3%2]" (range and throttle) until its tasks start
    "sacct-22.05-array-held.txt": {f"11_{i}": (("PENDING", "JobHeldUser", "0:0"), "PENDING") for i in range(4)},
    # accounting keeps the last pending reason on tasks that started (JobHeldUser on running tasks)
    "sacct-22.05-array-running.txt": {"11_0": (("RUNNING", "JobHeldUser", "0:0"), "RUNNING"),
                                      "11_1": (("RUNNING", "JobHeldUser", "0:0"), "RUNNING"),
                                      "11_2": (("PENDING", "JobHeldUser", "0:0"), "PENDING"),
                                      "11_3": (("PENDING", "JobHeldUser", "0:0"), "PENDING")},
    "sacct-22.05-array-finished.txt": {"11_0": (("COMPLETED", "JobHeldUser", "0:0"), "FINISHED"),
                                       "11_1": (("COMPLETED", "JobHeldUser", "0:0"), "FINISHED"),
                                       "11_2": (("FAILED", "JobArrayTaskLimit", "3:0"), "FAILED"),
                                       "11_3": (("COMPLETED", "JobArrayTaskLimit", "0:0"), "FINISHED")},
    # scontrol requeue from inside the job: back to PENDING (BeginTime in squeue), same id
    "sacct-22.05-requeued.txt": {"15": (("PENDING", "None", "0:0"), "PENDING")},
    "sacct-22.05-unknown.txt": {},
}

SACCT_ALL = {
    "1": (("COMPLETED", "None", "0:0"), "FINISHED"),
    "2": (("FAILED", "None", "3:0"), "FAILED"),
    "3": (("CANCELLED by 0", "None", "0:0"), "CANCELLED"),
    "4": (("TIMEOUT", "None", "0:0"), "TIMEDOUT"),
    "5": (("PENDING", "JobHeldUser", "0:0"), "PENDING"),
    "6": (("COMPLETED", "None", "0:0"), "FINISHED"),
    "7": (("COMPLETED", "Dependency", "0:0"), "FINISHED"),
    "8": (("FAILED", "None", "1:0"), "FAILED"),
    "9": (("CANCELLED", "Dependency", "0:0"), "CANCELLED"),
    "10": (("PENDING", "Dependency", "0:0"), "PENDING"),
    "11_0": (("COMPLETED", "JobHeldUser", "0:0"), "FINISHED"),
    "11_1": (("COMPLETED", "JobHeldUser", "0:0"), "FINISHED"),
    "11_2": (("FAILED", "JobArrayTaskLimit", "3:0"), "FAILED"),
    "11_3": (("COMPLETED", "JobArrayTaskLimit", "0:0"), "FINISHED"),
}


@pytest.mark.parametrize("name", sorted(SACCT))
def test_sacct_recordings(name):
    check(slurm.parse_job_table(read("slurm", name)), SACCT[name], SlurmBackend())


def test_sacct_one_call_for_every_case():
    """One sacct for all eleven jobs, as query() asks it (ids in chunks)."""
    check(slurm.parse_job_table(read("slurm", "sacct-22.05-all.txt")), SACCT_ALL, SlurmBackend())


def test_sacct_step_rows_are_skipped():
    """Without -X sacct adds the .batch steps (a cancelled job's step says plain CANCELLED, 0:15):
    the parser keeps the allocation rows only."""
    text_ = read("slurm", "sacct-22.05-steps.txt")
    assert "3.batch|CANCELLED||0:15" in text_.splitlines()
    parsed = slurm.parse_job_table(text_)
    expected = {k: v for k, v in SACCT_ALL.items() if k in ("1", "2", "3", "11_0", "11_1", "11_2", "11_3")}
    check(parsed, expected, SlurmBackend())


# --- Slurm 22.05.8: squeue -h -t all -j IDS -o '%i|%T|%r|' ---

SQUEUE = {
    "squeue-22.05-running.txt": {"3": (("RUNNING", "None", ""), "RUNNING")},
    # squeue lists finished jobs only for MinJobAge (2 s on the test cluster)
    "squeue-22.05-completed-failed.txt": {"1": (("COMPLETED", "None", ""), "FINISHED"),
                                          "2": (("FAILED", "NonZeroExitCode", ""), "FAILED")},
    "squeue-22.05-cancelled.txt": {"3": (("CANCELLED", "None", ""), "CANCELLED")},
    "squeue-22.05-timeout-completing.txt": {"4": (("COMPLETING", "TimeLimit", ""), "RUNNING")},
    "squeue-22.05-timeout.txt": {"4": (("TIMEOUT", "TimeLimit", ""), "TIMEDOUT")},
    "squeue-22.05-held.txt": {"5": (("PENDING", "JobHeldUser", ""), "PENDING")},
    "squeue-22.05-dependency.txt": {"6": (("RUNNING", "None", ""), "RUNNING"),
                                    "7": (("PENDING", "Dependency", ""), "PENDING")},
    "squeue-22.05-dependency-never-satisfied.txt": {
        "8": (("FAILED", "NonZeroExitCode", ""), "FAILED"),
        "9": (("CANCELLED", "DependencyNeverSatisfied", ""), "CANCELLED"),
        "10": (("PENDING", "DependencyNeverSatisfied", ""), "PENDING")},
    "squeue-22.05-array-held.txt": {f"11_{i}": (("PENDING", "JobHeldUser", ""), "PENDING") for i in range(4)},
    # released with a throttle of 2: two tasks run, the rest is one compressed row "11_[2-3%2]"
    "squeue-22.05-array-running.txt": {"11_0": (("RUNNING", "None", ""), "RUNNING"),
                                       "11_1": (("RUNNING", "None", ""), "RUNNING"),
                                       "11_2": (("PENDING", "JobArrayTaskLimit", ""), "PENDING"),
                                       "11_3": (("PENDING", "JobArrayTaskLimit", ""), "PENDING")},
    "squeue-22.05-array-completing.txt": {"11_0": (("RUNNING", "None", ""), "RUNNING"),
                                          "11_1": (("COMPLETING", "None", ""), "RUNNING"),
                                          "11_2": (("PENDING", "JobArrayTaskLimit", ""), "PENDING"),
                                          "11_3": (("PENDING", "JobArrayTaskLimit", ""), "PENDING"),
                                          "4": (("RUNNING", "None", ""), "RUNNING")},
    "squeue-22.05-array-finished.txt": {"11_2": (("FAILED", "NonZeroExitCode", ""), "FAILED"),
                                        "11_3": (("COMPLETED", "None", ""), "FINISHED"),
                                        "4": (("RUNNING", "None", ""), "RUNNING")},
    "squeue-22.05-requeued.txt": {"15": (("PENDING", "BeginTime", ""), "PENDING")},
    # 99999 was never submitted: squeue lists the known id only (exit 0)
    "squeue-22.05-partly-unknown.txt": {"5": (("PENDING", "JobHeldUser", ""), "PENDING")},
    # one unknown id: nothing on stdout (exit 1, "Invalid job id specified" on stderr)
    "squeue-22.05-unknown.txt": {},
}


@pytest.mark.parametrize("name", sorted(SQUEUE))
def test_squeue_recordings(name):
    check(slurm.parse_job_table(read("slurm", name)), SQUEUE[name], SlurmBackend())


@pytest.mark.parametrize("job_id, expected", [
    ("11_[0-3%2]", ["11_0", "11_1", "11_2", "11_3"]),   # squeue/sacct, held array with a throttle
    ("11_[2-3%2]", ["11_2", "11_3"]),                   # squeue, the tasks the throttle holds back
    ("11_2", ["11_2"]),
    ("15", ["15"]),
])
def test_expand_array_ids_on_recorded_ids(job_id, expected):
    ids = [line.split("|")[0] for name in ("squeue-22.05-array-held.txt", "squeue-22.05-array-running.txt",
                                            "sacct-22.05-array-held.txt", "squeue-22.05-array-finished.txt",
                                            "squeue-22.05-requeued.txt")
           for line in read("slurm", name).splitlines()]
    assert job_id in ids     # the id is one Slurm printed
    assert slurm.expand_array_ids(job_id) == expected


@pytest.mark.parametrize("name, held, blocked", [
    ("squeue-22.05-held.txt", {"5"}, set()),
    ("squeue-22.05-dependency.txt", set(), {"7"}),
    ("squeue-22.05-dependency-never-satisfied.txt", set(), {"9", "10"}),
    ("squeue-22.05-array-held.txt", {"11_0", "11_1", "11_2", "11_3"}, set()),
    ("squeue-22.05-array-running.txt", set(), set()),
])
def test_slurm_held_and_blocked(name, held, blocked):
    backend = SlurmBackend()
    parsed = slurm.parse_job_table(read("slurm", name))
    assert {i for i, n in parsed.items() if backend.is_held(n)} == held
    assert {i for i, n in parsed.items() if backend.blocked_by_parent(n)} == blocked


def test_max_array_size_from_recorded_scontrol():
    """MaxArraySize is read out of the recorded `scontrol show config` lines, with the command
    the plan pass asks the runner to run (optional: a silent controller means "use the default")."""
    recorded = read("slurm", "scontrol-22.05-show-config.txt")
    backend = SlurmBackend()
    assert backend.parse_max_array_size(recorded) == 100001
    assert backend.parse_max_array_size("ClusterName = x\n") is None
    command = backend.facts_command()
    assert command.argv == ("scontrol", "show", "config") and command.optional and command.timeout <= 5


# --- flux-core 0.88.0: flux jobs -a -c 0 --json IDS ---

C, F, R, H, T, P, DP, DG = ("6677331968", "8808038400", "10955522048", "13103005696",
                            "15200157696", "17397972992", "19545456640", "21692940288")
FLUX_CHILD = ("FAILED", f"dependency: dependency after-success={P} can never be satisfied", "1")
FLUX_GRANDCHILD = ("FAILED", f"dependency: dependency after-success={DP} job never started", "1")

FLUX = {
    "jobs-0.88-completed.json": {C: (("COMPLETED", "", "0"), "FINISHED")},
    "jobs-0.88-failed.json": {F: (("FAILED", "", "3"), "FAILED")},
    "jobs-0.88-running.json": {R: (("RUN", "", ""), "RUNNING")},
    # cancelled while running: SIGTERM, the job shell's 128+15; a pending one gets -128
    "jobs-0.88-canceled.json": {R: (("CANCELED", "cancel", "143"), "CANCELLED")},
    "jobs-0.88-held.json": {H: (("SCHED", "held", ""), "PENDING")},
    "jobs-0.88-held-canceled.json": {H: (("CANCELED", "cancel", "-128"), "CANCELLED")},
    "jobs-0.88-timeout.json": {T: (("TIMEOUT", "timeout: resource allocation expired", "142"), "TIMEDOUT")},
    "jobs-0.88-dependency.json": {DP: (("DEPEND", "", ""), "PENDING")},
    # Flux fails the dependents of a failed job; the backend reports them as cancelled
    "jobs-0.88-dependency-failed.json": {DP: (FLUX_CHILD, "CANCELLED")},
    "jobs-0.88-dependency-failed-grandchild.json": {DG: (FLUX_GRANDCHILD, "CANCELLED")},
    # nine ids, one unknown: {"jobs": [...]} with the eight it knows (JobID 123456789 unknown on stderr)
    "jobs-0.88-all.json": {
        C: (("COMPLETED", "", "0"), "FINISHED"),
        F: (("FAILED", "", "3"), "FAILED"),
        R: (("CANCELED", "cancel", "143"), "CANCELLED"),
        H: (("CANCELED", "cancel", "-128"), "CANCELLED"),
        T: (("TIMEOUT", "timeout: resource allocation expired", "142"), "TIMEDOUT"),
        P: (("FAILED", "", "1"), "FAILED"),
        DP: (FLUX_CHILD, "CANCELLED"),
        DG: (FLUX_GRANDCHILD, "CANCELLED"),
    },
    # the only id unknown: nothing on stdout, exit 1
    "jobs-0.88-unknown.stdout.txt": {},
}


@pytest.mark.parametrize("name", sorted(FLUX))
def test_flux_jobs_recordings(name):
    check(flux.parse_jobs_json(read("flux", name)), FLUX[name], FluxBackend())


def test_flux_single_id_is_a_bare_object_and_several_a_jobs_list():
    assert read("flux", "jobs-0.88-completed.json").lstrip().startswith('{"t_depend"')
    assert read("flux", "jobs-0.88-all.json").lstrip().startswith('{"jobs": [')


@pytest.mark.parametrize("name, held, blocked", [
    ("jobs-0.88-held.json", {H}, set()),
    ("jobs-0.88-dependency.json", set(), set()),    # waits on a running parent: not blocked
    ("jobs-0.88-all.json", set(), {DP, DG}),        # the held job was cancelled: no longer held
])
def test_flux_held_and_blocked(name, held, blocked):
    backend = FluxBackend()
    parsed = flux.parse_jobs_json(read("flux", name))
    assert {i for i, n in parsed.items() if backend.is_held(n)} == held
    assert {i for i, n in parsed.items() if backend.blocked_by_parent(n)} == blocked


# --- LSF 10.1 (documentation-derived): bjobs -a -o "jobid jobindex stat exit_code exit_reason
#     pend_reason" -json IDS ---

BJOBS = {
    "bjobs-10.1-done.json": {"1001": (("DONE", "", ""), "FINISHED")},
    "bjobs-10.1-exit.json": {"1002": (("EXIT", "", "3"), "FAILED")},
    "bjobs-10.1-runlimit.json": {
        "1003": (("EXIT", "TERM_RUNLIMIT: job killed after reaching LSF run time limit", "140"), "TIMEDOUT")},
    "bjobs-10.1-owner.json": {"1004": (("EXIT", "TERM_OWNER: job killed by owner", "130"), "CANCELLED")},
    "bjobs-10.1-held.json": {
        "1005": (("PSUSP", "The job was suspended by the user while pending;", ""), "PENDING")},
    "bjobs-10.1-dependency.json": {"1006": (("RUN", "", ""), "RUNNING"),
                                   "1007": (("PEND", "Job dependency condition not satisfied;", ""), "PENDING")},
    "bjobs-10.1-orphan.json": {
        "1002": (("EXIT", "", "3"), "FAILED"),
        "1008": (("PEND", "Dependency condition invalid or never satisfied;", ""), "PENDING"),
        "1009": (("EXIT", "TERM_ORPHAN_SYSTEM: orphan job was automatically terminated by LSF", ""), "CANCELLED")},
    "bjobs-10.1-array.json": {
        "1010[1]": (("DONE", "", ""), "FINISHED"),
        "1010[2]": (("DONE", "", ""), "FINISHED"),
        "1010[3]": (("EXIT", "", "3"), "FAILED"),
        "1010[4]": (("RUN", "", ""), "RUNNING"),
        "1010[5]": (("PEND", "The job array has reached its job slot limit;", ""), "PENDING")},
    "bjobs-10.1-unknown.json": {},                                        # an ERROR record only
    "bjobs-10.1-partly-unknown.json": {"1001": (("DONE", "", ""), "FINISHED")},
}


@pytest.mark.parametrize("name", sorted(BJOBS))
def test_bjobs_json(name):
    check(lsf.parse_bjobs_json(read("lsf", name)), BJOBS[name], LsfBackend())


@pytest.mark.parametrize("name, held, blocked", [
    ("bjobs-10.1-held.json", {"1005"}, set()),
    ("bjobs-10.1-dependency.json", set(), {"1007"}),
    ("bjobs-10.1-orphan.json", set(), {"1008", "1009"}),
])
def test_lsf_held_and_blocked(name, held, blocked):
    backend = LsfBackend()
    parsed = lsf.parse_bjobs_json(read("lsf", name))
    assert {i for i, n in parsed.items() if backend.is_held(n)} == held
    assert {i for i, n in parsed.items() if backend.blocked_by_parent(n)} == blocked


# --- LSF 10.1 (documentation-derived): bhist -l -n 0 IDS ---

BHIST_DONE = {"1001": (("DONE", "", "0"), "FINISHED")}
BHIST_EXIT = {"1002": (("EXIT", "", "3"), "FAILED")}
BHIST_RUNLIMIT = {"1003": (("EXIT", "TERM_RUNLIMIT", "140"), "TIMEDOUT")}
BHIST_OWNER = {"1004": (("EXIT", "TERM_OWNER", "130"), "CANCELLED")}

BHIST = {
    "bhist-10.1-done.txt": BHIST_DONE,
    "bhist-10.1-exit.txt": BHIST_EXIT,
    "bhist-10.1-runlimit.txt": BHIST_RUNLIMIT,
    "bhist-10.1-owner.txt": BHIST_OWNER,
    "bhist-10.1-multi.txt": {**BHIST_DONE, **BHIST_EXIT, **BHIST_RUNLIMIT, **BHIST_OWNER},
    "bhist-10.1-array.txt": {"1010[1]": (("DONE", "", "0"), "FINISHED"),
                             "1010[2]": (("DONE", "", "0"), "FINISHED"),
                             "1010[3]": (("EXIT", "", "3"), "FAILED"),
                             "1010[4]": (("DONE", "", "0"), "FINISHED")},
    # every long line folded at column 79, mid-word, with a 21-blank continuation indent
    "bhist-10.1-folded.txt": {"1011": (("EXIT", "TERM_RUNLIMIT", "140"), "TIMEDOUT")},
    "bhist-10.1-unknown.txt": {},
}


@pytest.mark.parametrize("name", sorted(BHIST))
def test_bhist_long(name):
    check(lsf.parse_bhist(read("lsf", name)), BHIST[name], LsfBackend())


def test_bhist_folded_file_is_folded_as_lsf_does():
    """The folded recording keeps LSF's layout: no line over 79 columns, and the event lines the
    parser reads (exit code, TERM_ reason) really are split over two lines."""
    lines = read("lsf", "bhist-10.1-folded.txt").splitlines()
    assert max(len(line) for line in lines) == 79
    exited = next(i for i, line in enumerate(lines) if "Exited with exit code 140" in line)
    assert lines[exited + 1].startswith(" " * 21) and not lines[exited].rstrip().endswith(";")
    completed = next(i for i, line in enumerate(lines) if "TERM_RUNLIMIT" in line)
    assert lines[completed + 1].startswith(" " * 21 + " LSF run time limit.")


def test_slurm_reason_is_shown_only_for_jobs_that_wait_or_never_ran():
    """sacct keeps a task's last pending reason after it ran (recorded: "FAILED|JobArrayTaskLimit");
    status shows a reason only where it explains something."""
    from maestro_compile.states import NO_MARKERS, Runtime, State
    parsed = slurm.parse_job_table(read("slurm", "sacct-22.05-array-finished.txt"))
    stale = {job_id: n for job_id, n in parsed.items() if n.reason not in ("None", "")}
    assert stale, "the recording has rows with a stale pending reason"
    backend = SlurmBackend()
    runtime = Runtime(submitted_at=1.0, jobs={job_id: n for job_id, n in parsed.items()},
                      parents={job_id: () for job_id in parsed})
    for job_id in stale:
        verdict = backend.judge(job_id, NO_MARKERS, True, runtime)
        assert verdict.state in (State.FINISHED, State.FAILED) and verdict.reason == "", (job_id, verdict)
    held = slurm.parse_job_table(read("slurm", "sacct-22.05-held.txt"))
    runtime = Runtime(submitted_at=1.0, jobs=dict(held), parents={job_id: () for job_id in held})
    assert all(backend.judge(j, NO_MARKERS, True, runtime).reason.startswith("held") for j in held)


# --- OpenPBS 23.06.06: qstat -x -f -F json IDS (the backend's command) ---

FINISHED_OK = "Job run at Wed Nov 25 at 21:18 on (pbshost:ncpus=1) and finished"
QSTAT = {
    "qstat-23.06-completed.json": {"8.pbshost": (("F substate=92", FINISHED_OK, "0"), "FINISHED")},
    "qstat-23.06-running.json": {"15.pbshost": (("R substate=42", "Job run at Wed Nov 25 at 21:18 on "
                                                 "(pbshost:ncpus=1)", ""), "RUNNING")},
    # 9 failed; PBS deleted its afterok child 10 and grandchild 11: F, substate 92, no Exit_status
    "qstat-23.06-dependency-deleted.json": {
        "9.pbshost": (("F substate=93", "Job run at Wed Nov 25 at 21:18 on (pbshost:ncpus=1) and failed", "3"),
                      "FAILED"),
        "10.pbshost": (("F substate=92 hold=s", "", ""), "CANCELLED"),
        "11.pbshost": (("F substate=92 hold=s", "", ""), "CANCELLED")},
    # qsub -h (user hold) and its afterok dependent (system hold, substate 22)
    "qstat-23.06-held-dep.json": {"12.pbshost": (("H substate=20 hold=u", "", ""), "PENDING"),
                                  "13.pbshost": (("H substate=22 hold=s", "", ""), "PENDING")},
    # qdel of the held parent: it is deleted (91, no Exit_status), its dependent stays held forever
    "qstat-23.06-deleted-held.json": {"12.pbshost": (("F substate=91 hold=u", "", ""), "CANCELLED"),
                                      "13.pbshost": (("H substate=22 hold=s", "", ""), "PENDING")},
    "qstat-23.06-deleted-running.json": {"15.pbshost": (("F substate=91", "Job run at Wed Nov 25 at 21:18 on "
                                                         "(pbshost:ncpus=1) and terminated by root@pbshost", "271"),
                                                        "CANCELLED")},
    "qstat-23.06-timeout.json": {"14.pbshost": (("F substate=93", "Job run at Wed Nov 25 at 21:18 on "
                                                 "(pbshost:ncpus=1) and exceeded resource walltime", "-29"),
                                                "TIMEDOUT")},
    # jobs named nan and 1e5: qstat prints the names as bare values, nan making the document invalid JSON
    "qstat-23.06-badname.json": {"16.pbshost": (("F substate=92", FINISHED_OK, "0"), "FINISHED"),
                                 "17.pbshost": (("F substate=92", FINISHED_OK, "0"), "FINISHED")},
    "qstat-23.06-partly-unknown.json": {"8.pbshost": (("F substate=92", FINISHED_OK, "0"), "FINISHED")},
    "qstat-23.06-unknown.json": {},
}


@pytest.mark.parametrize("name", sorted(QSTAT))
def test_qstat_recordings(name):
    check(pbs.parse_qstat_json(read("pbs", name)), QSTAT[name], PbsBackend())


def test_qstat_invalid_json_is_really_invalid_and_still_read():
    import json
    text = read("pbs", "qstat-23.06-badname.json")
    with pytest.raises(ValueError):
        json.loads(text)
    jobs = pbs.load_qstat_json(text)["Jobs"]
    assert jobs["16.pbshost"]["Job_Name"] == "nan" and jobs["17.pbshost"]["Job_Name"] == 1e5
    assert jobs["16.pbshost"]["Exit_status"] == 0      # the rest of the document keeps its types


def test_qstat_unknown_ids_stderr_is_tolerated():
    command = PbsBackend().status_command(["999.pbshost"], None)
    stderr = read("pbs", "qstat-23.06-unknown.stderr.txt")
    assert any(text.lower() in stderr.lower() for text in command.tolerate)
    assert command.partial and "-x" in command.argv


@pytest.mark.parametrize("name, job_id, held, blocked", [
    ("qstat-23.06-held-dep.json", "12.pbshost", True, False),
    ("qstat-23.06-held-dep.json", "13.pbshost", False, True),
    ("qstat-23.06-running.json", "15.pbshost", False, False),
    ("qstat-23.06-deleted-held.json", "12.pbshost", False, False),   # deleted while held: not held any more
])
def test_pbs_held_and_blocked(name, job_id, held, blocked):
    native = pbs.parse_qstat_json(read("pbs", name))[job_id]
    backend = PbsBackend()
    assert (backend.is_held(native), backend.blocked_by_parent(native)) == (held, blocked)


@pytest.mark.parametrize("name, job_id, reason", [
    ("qstat-23.06-timeout.json", "14.pbshost", "walltime exceeded"),
    ("qstat-23.06-deleted-running.json", "15.pbshost", "deleted while running (qdel)"),
    ("qstat-23.06-deleted-held.json", "12.pbshost", "deleted (qdel)"),
    ("qstat-23.06-dependency-deleted.json", "10.pbshost", "deleted by PBS: a job it depends on failed"),
    ("qstat-23.06-dependency-deleted.json", "9.pbshost", ""),
    ("qstat-23.06-completed.json", "8.pbshost", ""),
])
def test_pbs_reasons(name, job_id, reason):
    backend = PbsBackend()
    native = pbs.parse_qstat_json(read("pbs", name))[job_id]
    assert backend.reason(native, backend.native_state(native)) == reason
