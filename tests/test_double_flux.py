"""Tests of the flux-core 0.88 CLI test double (tests/doubles/flux).

Every assertion is a documented Flux behaviour (flux-submit(1), flux-batch(1),
flux-jobs(1), flux-job(1), flux-cancel(1), flux-environment(7), RFC 19/21/36
and the job-dependencies section); see tests/doubles/flux/README.md.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

DOUBLE = Path(__file__).parent / "doubles" / "flux"
BIN = DOUBLE / "bin"
sys.path.insert(0, str(DOUBLE))
import flux_double as fd

F58 = "\u0192"
EVENT_LINE = re.compile(r"^\d+\.\d{6} [a-z-]+( [a-z_]+=\S+)*$")


class Flux:
    """One private instance: runs the ``flux`` wrapper with FLUX_URI set."""

    def __init__(self, path, workdir, **knobs):
        self.path = path
        self.workdir = workdir
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
        # the wrapper runs "python3": resolve it to this interpreter first
        search = [str(BIN), os.path.dirname(sys.executable), env.get("PATH", "")]
        env.update(PATH=os.pathsep.join(search), LC_ALL="C.UTF-8",
                   FLUX_URI=f"local://{path}", FLUX_DOUBLE_BROKER_IDLE="3")
        env.update({k: str(v) for k, v in knobs.items()})
        self.env = env

    def run(self, *args, env=None, stdin=None, timeout=30):
        """``flux ARGS`` -> CompletedProcess (text)."""
        return subprocess.run(["flux", *args], check=False, capture_output=True, text=True,
                              env=env or self.env, cwd=self.workdir, input=stdin,
                              timeout=timeout)

    def ok(self, *args, **kwargs):
        """Run and require exit status 0; returns stdout."""
        proc = self.run(*args, **kwargs)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def submit(self, *args):
        """flux submit ... -> the printed job id."""
        return self.ok("submit", *args).strip()

    def wait(self, jobid, event="clean", timeout=15):
        """flux job wait-event -t TIMEOUT ID EVENT."""
        self.ok("job", "wait-event", "-t", str(timeout), jobid, event, timeout=timeout + 10)

    def info(self, jobid):
        """flux jobs --json ID (one object for one id)."""
        return json.loads(self.ok("jobs", "--json", jobid))

    def infos(self, *jobids):
        """flux jobs --json ID... ({"jobs": [...]} for several ids)."""
        return json.loads(self.ok("jobs", "--json", *jobids))["jobs"]

    def events(self, jobid):
        """Event names from flux job eventlog."""
        return [line.split()[1] for line in self.ok("job", "eventlog", jobid).splitlines()]

    def cleanup(self):
        """Kill the broker and any job process group this instance started."""
        state = fd.read_json(str(self.path / "state.json")) or {"jobs": {}}
        for job in state["jobs"].values():
            if job.get("pgid") and job["state"] in ("RUN", "CLEANUP"):
                try:
                    os.killpg(job["pgid"], signal.SIGKILL)
                except OSError:
                    pass
        pidfile = self.path / "broker.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline")
            if cmdline.exists() and str(self.path) in cmdline.read_text():
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def make_flux(tmp_path):
    """Factory for instances with env knobs; everything is killed afterwards."""
    made = []

    def factory(**knobs):
        path = tmp_path / f"instance{len(made)}"
        path.mkdir()
        made.append(Flux(path, tmp_path, **knobs))
        return made[-1]

    yield factory
    for flux in made:
        flux.cleanup()


@pytest.fixture
def flux(make_flux):
    """An instance with default knobs (8 cores, anonymous queue)."""
    return make_flux()


# ---- FLUID job ids (RFC 19) ------------------------------------------------

def test_f58_matches_rfc19_example_both_ways():
    assert fd.f58_encode(6731191091817518, plain=False) == F58 + "uZZybuNNy"
    assert fd.parse_jobid(F58 + "uZZybuNNy") == 6731191091817518
    assert fd.parse_jobid("fuZZybuNNy") == 6731191091817518
    assert fd.parse_jobid("  0x17e9fb8df16c2e ") == 0x17e9fb8df16c2e
    assert fd.parse_jobid("0017.e9fb.8df1.6c2e") == 0x17e9fb8df16c2e
    assert fd.parse_jobid("job.0017.e9fb.8df1.6c2e") == 0x17e9fb8df16c2e


def test_flux_job_id_converts_every_encoding(flux):
    out = flux.ok("job", "id", "--to=f58", "6731191091817518").strip()
    assert out == F58 + "uZZybuNNy"
    env = dict(flux.env, FLUX_F58_FORCE_ASCII="1")
    assert flux.ok("job", "id", "--to=f58", "6731191091817518", env=env).strip() == "fuZZybuNNy"
    assert flux.ok("job", "id", F58 + "uZZybuNNy").strip() == "6731191091817518"
    assert flux.ok("job", "id", "--to=hex", "fuZZybuNNy").strip() == "0x17e9fb8df16c2e"
    assert flux.ok("job", "id", "--to=dothex", "6731191091817518").strip() == "0017.e9fb.8df1.6c2e"
    assert flux.ok("job", "id", "--to=kvs", "6731191091817518").strip() == \
        "job.0017.e9fb.8df1.6c2e"
    assert flux.ok("job", "id", stdin="fuZZybuNNy\n0x10\n").split() == ["6731191091817518", "16"]
    bad = flux.run("job", "id", "not-an-id!")
    assert bad.returncode != 0 and "malformed input" in bad.stderr


def test_job_ids_are_large_and_increasing(flux):
    first = int(flux.ok("job", "id", flux.submit("true")))
    second = int(flux.ok("job", "id", flux.submit("true")))
    assert second > first > 2**40


# ---- connecting -------------------------------------------------------------

def test_no_instance_is_an_error_like_flux(flux):
    env = {k: v for k, v in flux.env.items() if k != "FLUX_URI"}
    for args in (["jobs"], ["submit", "true"]):
        proc = flux.run(*args, env=env)
        assert proc.returncode != 0
        assert "Unable to connect to Flux" in proc.stderr
    assert flux.run("job", "eventlog", "f1", env=env).returncode != 0


def test_flux_double_dir_is_the_fallback_instance(flux, tmp_path):
    env = {k: v for k, v in flux.env.items() if k != "FLUX_URI"}
    env["FLUX_DOUBLE_DIR"] = str(flux.path)
    jobid = flux.ok("submit", "true", env=env).strip()
    flux.wait(jobid)
    assert flux.info(jobid)["result"] == "COMPLETED"


def test_version_reports_0_88(flux):
    assert "0.88.0" in flux.ok("version")


# ---- flux submit ------------------------------------------------------------

def test_submit_runs_tasks_with_the_documented_environment(flux, tmp_path):
    jobid = flux.submit("-n2", "--output=env-{{id.dec}}.out", "sh", "-c",
                        'echo "$FLUX_TASK_RANK $FLUX_JOB_ID $FLUX_JOB_SIZE $FLUX_JOB_NNODES '
                        '$FLUX_TASK_LOCAL_ID $FLUX_URI"')
    assert jobid.startswith(F58)
    flux.wait(jobid)
    dec = flux.ok("job", "id", jobid).strip()
    lines = sorted((tmp_path / f"env-{dec}.out").read_text().splitlines())
    assert lines == [f"0 {jobid} 2 1 0 local://{flux.path}",
                     f"1 {jobid} 2 1 1 local://{flux.path}"]
    info = flux.info(jobid)
    assert (info["state"], info["result"], info["status"], info["returncode"]) == \
        ("INACTIVE", "COMPLETED", "COMPLETED", 0)
    assert info["id"] == int(dec) and info["ntasks"] == 2
    assert flux.events(jobid) == ["submit", "validate", "depend", "priority", "alloc",
                                  "start", "finish", "release", "free", "clean"]


def test_failed_job_reports_highest_exit_code(flux):
    jobid = flux.submit("-n3", "sh", "-c", "exit $FLUX_TASK_RANK")
    flux.wait(jobid)
    info = flux.info(jobid)
    assert (info["result"], info["returncode"], info["waitstatus"]) == ("FAILED", 2, 512)
    assert "finish status=512" in flux.ok("job", "eventlog", jobid)


def test_long_options_may_not_be_abbreviated(flux):
    proc = flux.run("submit", "--time=5", "true")
    assert proc.returncode == 2 and "unrecognized arguments: --time=5" in proc.stderr
    proc = flux.run("submit", "--job-nam=x", "true")
    assert proc.returncode == 2


def test_time_limit_units_and_job_name(flux):
    jobid = flux.submit("--urgency=hold", "-t", "2", "--job-name=step1", "true")
    assert flux.info(jobid)["duration"] == 120.0
    jobid2 = flux.submit("--urgency=hold", "-t", "90s", "true")
    assert flux.info(jobid2)["duration"] == 90.0
    row = flux.ok("jobs", "-n", "-o", "{name} {urgency} {state_single}", jobid).split()
    assert row == ["step1", "0", "S"]
    bad = flux.run("submit", "-t", "5x", "true")
    assert bad.returncode != 0 and "invalid Flux standard duration" in bad.stderr
    flux.ok("cancel", jobid, jobid2)


def test_unknown_queue_is_rejected_without_named_queues(flux):
    proc = flux.run("submit", "-q", "debug", "true")
    assert proc.returncode != 0 and "'debug' is not a valid queue" in proc.stderr
    assert flux.run("batch", "-n1", "-q", "debug", "--wrap", "true").returncode != 0


def test_named_queues(make_flux):
    flux = make_flux(FLUX_DOUBLE_QUEUES="batch,debug")
    jobid = flux.submit("-q", "debug", "true")
    flux.wait(jobid)
    assert flux.info(jobid)["queue"] == "debug"
    assert "no queue specified" in flux.run("submit", "true").stderr
    assert "Invalid queue 'nope'" in flux.run("submit", "-q", "nope", "true").stderr


def test_unsatisfiable_request_is_rejected(make_flux):
    flux = make_flux(FLUX_DOUBLE_CORES=2)
    proc = flux.run("submit", "-N2", "true")
    assert proc.returncode != 0 and "Unsatisfiable request" in proc.stderr
    assert flux.run("submit", "-n3", "true").returncode != 0


def test_cc_submits_one_job_per_id(flux, tmp_path):
    ids = flux.ok("submit", "--cc=1-3", "--output=cc{cc}.out", "sh", "-c",
                  "echo $FLUX_JOB_CC").split()
    assert len(set(ids)) == 3
    for jobid in ids:
        flux.wait(jobid)
    assert [(tmp_path / f"cc{i}.out").read_text().strip() for i in (1, 2, 3)] == ["1", "2", "3"]


def test_concurrent_submissions_are_safe(flux):
    results = []

    def submit():
        results.append(flux.run("submit", "true"))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [p.stdout.strip() for p in results]
    assert all(p.returncode == 0 for p in results) and len(set(ids)) == 8
    flux.ok("queue", "drain", "-t", "20")
    rows = flux.ok("jobs", "-a", "-n", "-o", "{id.f58} {result}").splitlines()
    assert sorted(rows) == sorted(f"{jobid} COMPLETED" for jobid in ids)


def test_cores_limit_concurrency(make_flux, tmp_path):
    flux = make_flux(FLUX_DOUBLE_CORES=1)
    first = flux.submit("sleep", "30")
    second = flux.submit("true")
    flux.wait(first, "start")
    time.sleep(0.3)
    assert flux.info(second)["state"] == "SCHED"
    flux.ok("cancel", first)
    flux.wait(second)
    first_info, second_info = flux.infos(first, second)
    assert second_info["t_run"] >= first_info["t_inactive"]


# ---- dependencies -------------------------------------------------------------

def test_dependency_on_unknown_job_is_rejected(flux):
    for value in ("123", "fuZZybuNNy"):
        proc = flux.run("submit", f"--dependency=afterok:{value}", "true")
        assert proc.returncode != 0
        assert f"dependency: afterok: id {value}: job not found" in proc.stderr
    proc = flux.run("batch", "-n1", "--dependency=afterany:123", "--wrap", "true")
    assert proc.returncode != 0 and "job not found" in proc.stderr


def test_afterok_chain_runs_in_order_with_any_id_encoding(flux):
    parent = flux.submit("--urgency=hold", "true")
    dec = flux.ok("job", "id", parent).strip()
    child = flux.submit(f"--dependency=afterok:{dec}", "true")
    grandchild = flux.submit(f"--dependency=afterok:{child}", "true")
    assert flux.info(child)["state"] == "DEPEND"
    assert flux.info(child)["dependencies"] == [f"after-success={dec}"]
    flux.ok("job", "urgency", parent, "16")
    flux.wait(grandchild)
    infos = flux.infos(parent, child, grandchild)
    assert [i["result"] for i in infos] == ["COMPLETED"] * 3
    assert infos[1]["t_run"] >= infos[0]["t_inactive"]
    assert infos[2]["t_run"] >= infos[1]["t_inactive"]


def test_failed_parent_cascades_dependency_exceptions(flux):
    parent = flux.submit("--urgency=hold", "sh", "-c", "exit 1")
    child = flux.submit(f"--dependency=afterok:{parent}", "true")
    grandchild = flux.submit(f"--dependency=afterok:{child}", "true")
    notok = flux.submit(f"--dependency=afternotok:{parent}", "true")
    flux.ok("job", "urgency", parent, "default")
    flux.ok("queue", "drain", "-t", "15")
    # the child ran into an impossible dependency; the grandchild's target
    # then never started (dependency-after plugin notes)
    notes = (f"after-success={parent} can never be satisfied",
             f"after-success={child} job never started")
    for info, note in zip(flux.infos(child, grandchild), notes):
        assert info["result"] == "FAILED" and info["returncode"] == 1
        assert info["exception"]["type"] == "dependency"
        assert info["exception"]["note"] == f"dependency {note}"
        assert "t_run" not in info
    assert "alloc" not in flux.events(grandchild)
    assert flux.info(notok)["result"] == "COMPLETED"
    rejected = flux.run("submit", f"--dependency=afterok:{parent}", "true")
    assert "failed or was canceled" in rejected.stderr and rejected.returncode != 0


def test_afterstart_is_satisfied_when_the_target_starts(flux):
    parent = flux.submit("sleep", "30")
    child = flux.submit(f"--dependency=afterstart:{parent}", "true")
    deprecated = flux.run("submit", f"--dependency=after:{parent}", "true")
    assert "dependency scheme 'after' is deprecated, use 'afterstart'" in deprecated.stderr
    flux.wait(child)
    flux.wait(deprecated.stdout.strip())
    parent_info, child_info = flux.infos(parent, child)
    assert parent_info["state"] == "RUN" and child_info["result"] == "COMPLETED"
    assert f'dependency-add description="after-start={parent}"' in \
        flux.ok("job", "eventlog", child)
    flux.ok("cancel", parent)


def test_held_job_runs_only_after_urgency_change(flux):
    jobid = flux.submit("--urgency=hold", "true")
    time.sleep(0.3)
    info = flux.info(jobid)
    assert (info["state"], info["urgency"], info["priority"]) == ("SCHED", 0, 0)
    assert flux.ok("jobs", "-n", "-o", "{contextual_info}", jobid).strip() == "held"
    flux.ok("job", "urgency", jobid, "default")
    flux.wait(jobid)
    assert flux.info(jobid)["result"] == "COMPLETED"
    assert "urgency userid=" in flux.ok("job", "eventlog", jobid)


def test_cancel_pending_job(flux):
    held = flux.submit("--urgency=hold", "true")
    ok_child = flux.submit(f"--dependency=afterok:{held}", "true")
    any_child = flux.submit(f"--dependency=afterany:{held}", "true")
    flux.ok("cancel", held)
    flux.wait(any_child)
    info, child, released = flux.infos(held, ok_child, any_child)
    assert (info["result"], info["returncode"], info["exception"]["type"]) == \
        ("CANCELED", -128, "cancel")
    assert child["result"] == "FAILED"
    assert child["exception"]["note"] == f"dependency after-success={held} job never started"
    # flux-core 0.88 (PR 7570): only afterany is satisfied by a job canceled while pending
    assert released["result"] == "COMPLETED"
    again = flux.run("cancel", held)
    assert again.returncode == 1 and "unknown job id" in again.stderr


def test_cancel_running_job_terminates_it(flux):
    jobid = flux.submit("sleep", "30")
    flux.wait(jobid, "start")
    flux.ok("cancel", "-m", "enough", jobid)
    flux.wait(jobid)
    info = flux.info(jobid)
    assert (info["result"], info["returncode"]) == ("CANCELED", 128 + signal.SIGTERM)
    assert info["exception"] == {"occurred": True, "severity": 0, "type": "cancel",
                                 "note": "enough"}
    log = flux.ok("job", "eventlog", jobid)
    assert 'exception type="cancel" severity=0 userid=' in log and 'note="enough"' in log


def test_time_limit_signal_then_timeout(flux, tmp_path):
    marker = tmp_path / "got-usr1"
    jobid = flux.submit("-t", "2s", "--signal=USR1@1", "sh", "-c",
                        f'trap "touch {marker}" USR1; while :; do sleep 0.05; done')
    flux.wait(jobid)
    info = flux.info(jobid)
    assert info["result"] == "TIMEOUT"
    assert (info["exception"]["type"], info["exception"]["note"]) == \
        ("timeout", "resource allocation expired")
    assert marker.exists()
    assert 1.9 <= info["runtime"] < 4.5


def test_job_kill_signals_running_jobs_only(flux, tmp_path):
    marker, ready = tmp_path / "usr2", tmp_path / "ready"
    jobid = flux.submit("sh", "-c", f'trap "touch {marker}; exit 0" USR2; touch {ready}; '
                        "while :; do sleep 0.05; done")
    deadline = time.time() + 10
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    flux.ok("job", "kill", "-s", "SIGUSR2", jobid)
    flux.wait(jobid)
    assert marker.exists() and flux.info(jobid)["result"] == "COMPLETED"
    proc = flux.run("job", "kill", jobid)
    assert proc.returncode == 1 and "unknown job id" in proc.stderr


# ---- flux batch -----------------------------------------------------------------

def test_batch_requires_slots(flux, tmp_path):
    (tmp_path / "s.sh").write_text("#!/bin/sh\ntrue\n")
    proc = flux.run("batch", "s.sh")
    assert proc.returncode != 0
    assert "Number of slots to allocate must be specified" in proc.stderr
    (tmp_path / "plain.sh").write_text("true\n")
    proc = flux.run("batch", "-n1", "plain.sh")
    assert proc.returncode != 0 and "does not appear to start with '#!'" in proc.stderr


def test_batch_directives_output_and_environment(flux, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "# flux: -n 2 --job-name='from directive'   # a comment\n"
        "# flux: -t 10m\n"
        "#\n"
        "# flux: --setattr=user.note=\"two words\"\n"
        "import os, sys, sys as _\n"
        "print('args', sys.argv[1:])\n"
        "print('enclosing', os.environ.get('FLUX_ENCLOSING_ID'))\n"
        "print('jobid', os.environ.get('FLUX_JOB_ID', 'unset'))\n"
        "print('uri', os.environ['FLUX_URI'])\n"
        "print('to stderr', file=sys.stderr)\n")
    jobid = flux.ok("batch", "job.sh", "a", "b c").strip()
    flux.wait(jobid)
    info = flux.info(jobid)
    assert (info["name"], info["ntasks"], info["duration"], info["result"]) == \
        ("from directive", 2, 600.0, "COMPLETED")
    output = (tmp_path / f"flux-{jobid}.out").read_text()
    assert "args ['a', 'b c']" in output and f"enclosing {jobid}" in output
    assert "jobid unset" in output and f"uri local://{flux.path}" in output
    assert "to stderr" in output
    override = flux.ok("batch", "--job-name=cli", "job.sh").strip()
    assert flux.info(override)["name"] == "cli"
    flux.wait(override)


def test_batch_directive_errors(flux, tmp_path):
    (tmp_path / "orphan.sh").write_text("#!/bin/sh\n# flux: -n1\necho hi\n# flux: -N1\n")
    proc = flux.run("batch", "orphan.sh")
    assert proc.returncode != 0 and "orphan 'flux:' detected" in proc.stderr
    (tmp_path / "badarg.sh").write_text("#!/bin/sh\n# flux: -n1\n# flux: --bad-arg\n")
    proc = flux.run("batch", "badarg.sh")
    assert proc.returncode == 2
    assert "argument parsing failed at badarg.sh line 3" in proc.stderr


def test_batch_script_is_copied_at_submission(flux, tmp_path):
    script = tmp_path / "copy.sh"
    script.write_text("#!/bin/sh\necho original\n")
    jobid = flux.ok("batch", "-n1", "--urgency=hold", "--output=copy.out", "copy.sh").strip()
    script.write_text("#!/bin/sh\necho modified\n")
    flux.ok("job", "urgency", jobid, "default")
    flux.wait(jobid)
    assert (tmp_path / "copy.out").read_text() == "original\n"


# ---- flux run --------------------------------------------------------------------

def test_run_waits_and_returns_highest_exit_code(flux):
    proc = flux.run("run", "-n3", "sh", "-c", 'echo "rank $FLUX_TASK_RANK"; exit $FLUX_TASK_RANK')
    assert proc.returncode == 2
    assert sorted(proc.stdout.split("\n")[:-1]) == ["rank 0", "rank 1", "rank 2"]
    assert flux.run("run", "true").returncode == 0


# ---- flux jobs ---------------------------------------------------------------------

def test_jobs_default_lists_only_active_jobs(flux):
    done = flux.submit("true")
    flux.wait(done)
    held = flux.submit("--urgency=hold", "--job-name=waiting", "true")
    out = flux.ok("jobs")
    assert out.splitlines()[0].split() == ["JOBID", "USER", "NAME", "ST", "NTASKS",
                                           "NNODES", "TIME", "INFO"]
    assert held in out and done not in out
    assert done in flux.ok("jobs", "-a")
    assert flux.ok("jobs", "-n", "-o", "{id.f58}").split() == [held]
    table = flux.ok("jobs", "-a", "-o", "{id.dec} {status} {result}").splitlines()
    assert table[0].split() == ["JOBID", "STATUS", "RESULT"]
    assert table[1].split()[1:] == ["SCHED"] and table[2].split()[1:] == ["COMPLETED"] * 2


def test_jobs_json_shapes(flux):
    jobid = flux.submit("true")
    flux.wait(jobid)
    listing = json.loads(flux.ok("jobs", "-a", "--json"))
    assert list(listing) == ["jobs"] and len(listing["jobs"]) == 1
    job = json.loads(flux.ok("jobs", "--json", jobid))
    assert job == listing["jobs"][0]
    assert job["jobid"] == jobid and isinstance(job["id"], int)
    for key in ("t_submit", "t_run", "t_inactive", "runtime", "name", "urgency",
                "state", "result", "status", "returncode", "waitstatus", "dependencies"):
        assert key in job
    assert job["exception"] == {"occurred": False}
    held = json.loads(flux.ok("jobs", "--json", flux.submit("--urgency=hold", "true")))
    assert "result" not in held and "returncode" not in held and "t_run" not in held
    unknown = flux.run("jobs", "--json", "fuZZybuNNy")
    assert unknown.stdout == "" and "JobID fuZZybuNNy unknown" in unknown.stderr


def test_jobs_count_defaults_to_1000(flux):
    inst = fd.Instance(f"local://{flux.path}", str(flux.path))
    spec = {"kind": "submit", "urgency": 16, "queue": None, "bank": None, "flags": 0,
            "req": {"nnodes": 0, "cores": 1, "exclusive": False, "gpus": 0},
            "dependencies": [], "name": "bulk", "cwd": str(flux.path), "ntasks": 1,
            "duration": 0.0, "signal": None, "environment": {}, "command": ["true"]}
    with inst.transaction() as state:
        jm = fd.JobManager(inst, state)
        for _ in range(1005):
            jm.raise_exception(jm.get(jm.submit(dict(spec))), "cancel", "")
    proc = flux.run("jobs", "-a")
    assert len(proc.stdout.splitlines()) == 1001
    assert "output truncated at 1000 jobs" in proc.stderr
    assert len(flux.ok("jobs", "-a", "-n", "-c", "0", "-o", "{id}").split()) == 1005
    assert len(flux.ok("jobs", "-a", "-n", "-c", "5", "-o", "{id}").split()) == 5
    assert len(json.loads(flux.ok("jobs", "-a", "--json"))["jobs"]) == 1000


# ---- eventlog formats, broker --------------------------------------------------------

def test_eventlog_text_and_raw_formats(flux):
    jobid = flux.submit("--urgency=hold", "true")
    flux.ok("cancel", jobid)
    text = flux.ok("job", "eventlog", jobid).splitlines()
    assert all(EVENT_LINE.match(line) for line in text), text
    assert text[0].split()[1:] == ["submit", f"userid={os.getuid()}", "urgency=0",
                                   "flags=0", "version=1"]
    assert text[-1].split()[1] == "clean"
    raw = [json.loads(line) for line in flux.ok("job", "info", jobid, "eventlog").split()]
    assert [e["name"] for e in raw] == [line.split()[1] for line in text]
    assert raw[-2]["context"]["type"] == "cancel"
    stamps = [e["timestamp"] for e in raw]
    assert stamps == sorted(stamps)


def test_broker_is_detached_and_exits_when_idle(make_flux):
    flux = make_flux(FLUX_DOUBLE_BROKER_IDLE="0.5")
    jobid = flux.submit("true")
    flux.wait(jobid)
    pid = int((flux.path / "broker.pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    assert argv[1].endswith("flux_double.py") and argv[2:] == ["broker", str(flux.path), ""]
    assert os.readlink(f"/proc/{pid}/cwd") == str(flux.path)
    assert os.getsid(pid) == pid
    deadline = time.time() + 10
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not (flux.path / "broker.pid").exists()
