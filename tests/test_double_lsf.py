"""Tests of the LSF test double (tests/doubles/lsf) against documented LSF 10.1 behaviour.

Every test gets its own state directory; LSF_DOUBLE_MINUTE and the terminate interval are
scaled down so run limits and kill sequences take about a second. The fixture stops the
double's mbatchd and any job process group it started (by pid) when the test ends.
"""
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

LSF_DIR = Path(__file__).parent / "doubles" / "lsf"
SUBMITTED = re.compile(r"^Job <(\d+)> is submitted to (default )?queue <(\w+)>\.$")
FIELDS = "jobid jobindex stat exit_code exit_reason job_name submit_time start_time finish_time pend_reason"


class Lsf:
    """Runs the double's commands with a private state dir and reads results back."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.state = tmp_path / "lsf-state"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LSF_DOUBLE_", "LSB_"))}
        self.env = dict(base, LSF_DOUBLE_DIR=str(self.state), PATH="%s:%s" % (LSF_DIR / "bin", base["PATH"]),
                        LSF_DOUBLE_IDLE_EXIT="5", LSF_DOUBLE_TERMINATE_INTERVAL="0.2")

    def run(self, *argv, input=None, cwd=None, **env):
        merged = dict(self.env, **env)
        return subprocess.run(list(argv), input=input, cwd=cwd or self.tmp, env=merged,
                              capture_output=True, text=True, timeout=30)

    def bsub(self, *argv, input=None, cwd=None, **env):
        """Submit and return the job id (asserting LSF's exact confirmation line)."""
        res = self.run("bsub", *argv, input=input, cwd=cwd, **env)
        assert res.returncode == 0, res.stderr
        m = SUBMITTED.match(res.stdout.strip())
        assert m, res.stdout
        return int(m.group(1))

    def records(self, *ids, fields=FIELDS, **env):
        res = self.run("bjobs", "-a", "-o", fields, "-json", *map(str, ids), **env)
        return json.loads(res.stdout)["RECORDS"]

    def record(self, jid, **env):
        return self.records(jid, **env)[0]

    def wait(self, jid, stats=("DONE", "EXIT"), timeout=15):
        """Wait until every element of a job is in one of the given states."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            recs = self.records(jid)
            if recs and all(r.get("STAT") in stats for r in recs):
                return recs if len(recs) > 1 else recs[0]
            time.sleep(0.05)
        raise AssertionError("job %s not in %s: %s" % (jid, stats, self.records(jid)))

    def cleanup(self):
        """Stop our mbatchd and the process groups of jobs it left running (by id only)."""
        pidfile = self.state / "mbatchd.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text() or 0)
            if pid and str(self.state).encode() in _cmdline(pid):
                _signal(pid, signal.SIGTERM, group=False)
        statefile = self.state / "state.json"
        if statefile.exists():
            for job in json.loads(statefile.read_text())["jobs"].values():
                for elem in job["elements"].values():
                    if elem["stat"] == "RUN" and elem["pgid"]:
                        _signal(elem["pgid"], signal.SIGKILL, group=True)


def _cmdline(pid):
    try:
        return Path("/proc/%d/cmdline" % pid).read_bytes()
    except OSError:
        return b""


def _signal(pid, sig, group):
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def lsf(tmp_path):
    double = Lsf(tmp_path)
    yield double
    double.cleanup()


def wait_for(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------------ bsub

def test_state_dir_is_required(lsf):
    env = dict(lsf.env)
    del env["LSF_DOUBLE_DIR"]
    res = subprocess.run(["bjobs"], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "LSF_DOUBLE_DIR" in res.stderr


def test_submission_message_queues_and_increasing_ids(lsf):
    first = lsf.run("bsub", "true")
    assert re.fullmatch(r"Job <\d+> is submitted to default queue <normal>\.\n", first.stdout)
    res = lsf.run("bsub", "-q", "short", "true", LSF_DOUBLE_QUEUES="normal,short")
    assert re.fullmatch(r"Job <\d+> is submitted to queue <short>\.\n", res.stdout)
    ids = [int(SUBMITTED.match(r.stdout.strip()).group(1)) for r in (first, res)]
    ids.append(lsf.bsub("-q", "normal", "true"))
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_first_job_id_knob_gives_long_ids(lsf):
    jid = lsf.bsub("true", LSF_DOUBLE_FIRST_JOBID="123456789")
    assert jid == 123456789
    assert lsf.wait(jid)["JOBID"] == "123456789"


@pytest.mark.parametrize("argv, env, message", [
    (["-Z", "true"], {}, "illegal option -- Z"),
    (["-q", "bogus", "true"], {}, "bogus: No such queue."),
    (["-W", "1:xx", "true"], {}, "Bad RUNLIMIT specification."),
    (["-W", "abc", "true"], {}, "Bad RUNLIMIT specification."),
    (["-J", "a[0-3]", "true"], {}, "Bad job array index list."),
    (["-J", "a[3-1]", "true"], {}, "Bad job array index list."),
    (["-J", "a[1-1001]", "true"], {}, "Job array index too large"),
    (["-J", "a[1-5]", "true"], {"LSF_DOUBLE_MAX_JOB_ARRAY_SIZE": "4"}, "Job array index too large"),
    (["-w", "done(99999)", "true"], {}, "99999: No matching job found."),
    (["-w", "done(1", "true"], {}, "Dependency condition syntax error."),
    (["-ti", "true"], {}, "-ti"),
])
def test_bsub_rejections(lsf, argv, env, message):
    res = lsf.run("bsub", *argv, **env)
    assert res.returncode != 0 and res.stdout == ""
    assert message in res.stderr
    assert res.stderr.rstrip().endswith("Job not submitted.")


def test_rejected_submissions_leave_no_job_and_consume_no_id(lsf):
    for argv in (["-Z", "true"], ["-q", "bogus", "true"], ["-J", "a[0-3]", "true"], ["-w", "done(7)", "true"]):
        assert lsf.run("bsub", *argv).returncode != 0
    assert lsf.records() == []
    assert lsf.bsub("true") == 1


def test_dependency_on_unknown_job_is_rejected_but_known_one_accepted(lsf):
    parent = lsf.bsub("true")
    lsf.bsub("-w", "done(%d)" % parent, "true")
    assert lsf.run("bsub", "-w", "done(%d) && done(%d)" % (parent, parent + 50), "true").returncode != 0


def test_job_environment_script_directives_and_cwd(lsf, tmp_path):
    (tmp_path / "work").mkdir()
    script = ("#!/bin/bash\n#BSUB -J from_directive\n#BSUB -cwd work\n#BSUB -o job.%J.out\n"
              "echo id=$LSB_JOBID idx=$LSB_JOBINDEX name=$LSB_JOBNAME subcwd=$LS_SUBCWD pwd=$(pwd) foo=$FOO\n"
              "echo to-stderr >&2\n")
    jid = lsf.bsub("-J", "from_cli", input=script, FOO="bar")
    assert lsf.wait(jid)["STAT"] == "DONE"
    out = (tmp_path / "work" / ("job.%d.out" % jid)).read_text()
    assert "id=%d idx=0 name=from_cli subcwd=%s pwd=%s foo=bar" % (jid, tmp_path, tmp_path / "work") in out
    assert "to-stderr" in out                      # -o without -e also takes stderr
    assert lsf.record(jid)["JOB_NAME"] == "from_cli"


def test_output_files_append_and_overwrite(lsf, tmp_path):
    for name in ("a.out", "o.out", "a.err", "o.err"):
        (tmp_path / name).write_text("old\n")
    j1 = lsf.bsub("-o", "a.out", "-e", "a.err", "echo new; echo err >&2")
    j2 = lsf.bsub("-oo", "o.out", "-eo", "o.err", "echo new; echo err >&2")
    lsf.wait(j1), lsf.wait(j2)
    assert (tmp_path / "a.out").read_text() == "old\nnew\n"
    assert (tmp_path / "a.err").read_text() == "old\nerr\n"
    assert (tmp_path / "o.out").read_text() == "new\n"
    assert (tmp_path / "o.err").read_text() == "err\n"


def test_without_o_output_goes_to_the_state_dir(lsf):
    jid = lsf.bsub("echo mailed-in-real-lsf")
    lsf.wait(jid)
    assert "mailed-in-real-lsf" in (lsf.state / "output" / ("%d.out" % jid)).read_text()


# ------------------------------------------------------------------------ bjobs

def test_default_table_and_finished_jobs_need_a(lsf):
    done = lsf.bsub("-J", "quick", "true")
    lsf.wait(done)
    held = lsf.bsub("-H", "-J", "held", "true")
    res = lsf.run("bjobs")
    lines = res.stdout.splitlines()
    assert lines[0] == "JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST   JOB_NAME   SUBMIT_TIME"
    assert len(lines) == 2
    assert re.match(r"^%d\s+\S+\s+PSUSP\s+normal\s+\S+\s+held\s+\w{3} [ \d]\d \d\d:\d\d$" % held, lines[1])
    all_lines = lsf.run("bjobs", "-a").stdout.splitlines()
    assert any(re.match(r"^%d\s+\S+\s+DONE\s+normal\s+\S+\s+\S+\s+quick\s" % done, l) for l in all_lines)
    lsf.run("bkill", str(held))
    empty = lsf.run("bjobs")
    assert empty.stdout == "" and "No unfinished job found" in empty.stderr


def test_custom_format_delimiter_and_noheader(lsf):
    ok = lsf.bsub("-J", "ok", "true")
    bad = lsf.bsub("-J", "bad", "exit 3")
    lsf.wait(ok), lsf.wait(bad)
    res = lsf.run("bjobs", "-a", "-o", "jobid stat exit_code exit_reason job_name delimiter='|'", "-noheader",
                  str(ok), str(bad))
    assert res.stdout.splitlines() == ["%d|DONE|-|-|ok" % ok, "%d|EXIT|3|-|bad" % bad]
    header = lsf.run("bjobs", "-a", "-o", "jobid:12 stat:5 exit_code:-9", str(bad)).stdout.splitlines()
    assert header[0] == "JOBID        STAT  EXIT_CODE"
    assert header[1] == "%-12d EXIT          3" % bad


def test_json_shape_exit_codes_and_unknown_ids(lsf):
    ok = lsf.bsub("true")
    bad = lsf.bsub("exit 3")
    lsf.wait(ok), lsf.wait(bad)
    res = lsf.run("bjobs", "-a", "-o", "jobid stat exit_code exit_reason", "-json", str(ok), str(bad), "99999")
    doc = json.loads(res.stdout)
    assert list(doc) == ["COMMAND", "JOBS", "RECORDS"] and doc["COMMAND"] == "bjobs" and doc["JOBS"] == 3
    assert doc["RECORDS"][0] == {"JOBID": str(ok), "STAT": "DONE", "EXIT_CODE": "", "EXIT_REASON": ""}
    assert doc["RECORDS"][1] == {"JOBID": str(bad), "STAT": "EXIT", "EXIT_CODE": "3", "EXIT_REASON": ""}
    assert doc["RECORDS"][2] == {"ERROR": "Job <99999> is not found"}
    text = lsf.run("bjobs", "99999")
    assert text.returncode == 255 and text.stderr.strip() == "Job <99999> is not found"


def test_bjobs_element_query_and_array_records(lsf):
    jid = lsf.bsub("-J", "spread[1-10:2,20]", "-H", "true")
    recs = lsf.records(jid)
    assert [r["JOBINDEX"] for r in recs] == ["1", "3", "5", "7", "9", "20"]
    assert {r["JOBID"] for r in recs} == {str(jid)}
    assert [r["JOB_NAME"] for r in recs][:2] == ["spread[1]", "spread[3]"]
    one = lsf.records('%d[7]' % jid)
    assert len(one) == 1 and one[0]["JOBINDEX"] == "7" and one[0]["STAT"] == "PSUSP"
    lsf.run("bkill", str(jid))


# ------------------------------------------------------------------------ holds, dependencies

def test_hold_and_bresume(lsf, tmp_path):
    jid = lsf.bsub("-H", "touch ran")
    rec = lsf.record(jid)
    assert rec["STAT"] == "PSUSP" and rec["PEND_REASON"].startswith("The job was suspended by the user")
    time.sleep(0.5)
    assert not (tmp_path / "ran").exists() and lsf.record(jid)["STAT"] == "PSUSP"
    res = lsf.run("bresume", str(jid))
    assert res.stdout == "Job <%d> is being resumed\n" % jid
    assert lsf.wait(jid)["STAT"] == "DONE" and (tmp_path / "ran").exists()
    again = lsf.run("bresume", str(jid))
    assert again.returncode != 0 and "Job <%d>: Job has already finished" % jid in again.stderr


def test_dependency_conditions(lsf, tmp_path):
    a = lsf.bsub("-J", "nameA", "sleep 0.6; date +%s.%N > a")
    f = lsf.bsub("exit 3")
    b = lsf.bsub("-w", "done(%d)" % a, "date +%s.%N > b")
    c = lsf.bsub("-w", "exit(%d, 3) && ended(%d)" % (f, a), "true")
    d = lsf.bsub("-w", "exit(%d,==4)" % f, "true")
    e = lsf.bsub("-w", "'!done(%d) || (started(%d))'" % (f, a), "true")
    g = lsf.bsub("-w", '"nameA"', "true")
    for jid in (b, c, e, g):
        assert lsf.wait(jid)["STAT"] == "DONE", jid
    assert float((tmp_path / "b").read_text()) > float((tmp_path / "a").read_text())
    rec = lsf.record(d)
    assert rec["STAT"] == "PEND" and rec["PEND_REASON"].startswith("Dependency condition invalid or never satisfied")


def test_orphans_pend_without_ti_and_are_terminated_with_ti(lsf):
    parent = lsf.bsub("exit 1")
    stays = lsf.bsub("-w", "done(%d)" % parent, "true")
    child = lsf.bsub("-w", "done(%d)" % parent, "-ti", "true")
    grandchild = lsf.bsub("-w", "done(%d)" % child, "-ti", "true")
    for jid in (child, grandchild):
        rec = lsf.wait(jid)
        assert rec["STAT"] == "EXIT" and rec["EXIT_REASON"].startswith("TERM_ORPHAN_SYSTEM")
    rec = lsf.record(stays)
    assert rec["STAT"] == "PEND" and "Dependency condition invalid or never satisfied" in rec["PEND_REASON"]
    hist = lsf.run("bhist", "-l", "-n", "0", "-UF", str(child)).stdout
    assert "Completed <exit>; TERM_ORPHAN_SYSTEM:" in hist


# ------------------------------------------------------------------------ arrays

def test_array_environment_output_pattern_and_throttle(lsf, tmp_path):
    script = "echo idx=$LSB_JOBINDEX end=$LSB_JOBINDEX_END name=$LSB_JOBNAME; date +%s.%N; sleep 0.4; date +%s.%N"
    jid = lsf.bsub("-J", "arr[1-6]%2", "-o", "arr.%J.%I.log", script)
    recs = lsf.wait(jid)
    assert [r["STAT"] for r in recs] == ["DONE"] * 6
    spans = []
    for idx in range(1, 7):
        lines = (tmp_path / ("arr.%d.%d.log" % (jid, idx))).read_text().split()
        assert lines[:3] == ["idx=%d" % idx, "end=6", "name=arr[%d]" % idx]
        spans.append((float(lines[3]), float(lines[4])))
    peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert peak == 2


def test_element_wise_dependency_and_single_element(lsf, tmp_path):
    parent = lsf.bsub("-J", "A[1-3]", "sleep 0.$LSB_JOBINDEX; date +%s.%N > A$LSB_JOBINDEX; [ $LSB_JOBINDEX != 2 ]")
    child = lsf.bsub("-J", "B[1-3]", "-w", "done(%d[*])" % parent, "date +%s.%N > B$LSB_JOBINDEX")
    single = lsf.bsub("-w", '"%d[3]"' % parent, "true")
    assert lsf.run("bsub", "-J", "C[1-2]", "-w", "done(%d[*])" % parent, "true").returncode != 0
    assert lsf.wait(single)["STAT"] == "DONE"
    b1 = lsf.wait('%d[1]' % child)
    b3 = lsf.wait('%d[3]' % child)
    assert b1["STAT"] == b3["STAT"] == "DONE"
    for idx in (1, 3):
        assert float((tmp_path / ("B%d" % idx)).read_text()) > float((tmp_path / ("A%d" % idx)).read_text())
    b2 = lsf.record('%d[2]' % child)
    assert b2["STAT"] == "PEND" and b2["PEND_REASON"].startswith("Dependency condition invalid")
    lsf.run("bkill", str(child))


# ------------------------------------------------------------------------ limits, kill, requeue

def test_run_limit_warning_then_sigusr2(lsf, tmp_path):
    script = "trap 'touch warned' USR1; while true; do sleep 0.05; done"
    jid = lsf.bsub("-W", "5", "-wa", "USR1", "-wt", "2", script, LSF_DOUBLE_MINUTE="0.2")
    rec = lsf.wait(jid)
    assert rec["STAT"] == "EXIT" and rec["EXIT_CODE"] == "140"       # 128 + SIGUSR2
    assert rec["EXIT_REASON"].startswith("TERM_RUNLIMIT")
    assert (tmp_path / "warned").exists()


def test_run_limit_kills_after_ten_minutes_grace(lsf):
    start = time.time()
    jid = lsf.bsub("-W", "1", "trap '' USR2; while true; do sleep 0.05; done", LSF_DOUBLE_MINUTE="0.1")
    rec = lsf.wait(jid)
    assert rec["STAT"] == "EXIT" and rec["EXIT_CODE"] == "137" and rec["EXIT_REASON"].startswith("TERM_RUNLIMIT")
    assert time.time() - start >= 0.1 + 10 * 0.1


def test_bkill_running_pending_finished_and_unknown(lsf, tmp_path):
    running = lsf.bsub("trap 'echo INT >> sig' INT; trap 'echo TERM >> sig' TERM; while true; do sleep 0.05; done")
    lsf.wait(running, ("RUN",))
    pending = lsf.bsub("-H", "true")
    res = lsf.run("bkill", str(running), str(pending))
    assert res.stdout.splitlines() == ["Job <%d> is being terminated" % running, "Job <%d> is being terminated" % pending]
    assert lsf.record(pending)["STAT"] == "EXIT"
    rec = lsf.wait(running)
    assert rec["STAT"] == "EXIT" and rec["EXIT_CODE"] == "137" and rec["EXIT_REASON"].startswith("TERM_OWNER")
    assert (tmp_path / "sig").read_text().split() == ["INT", "TERM"]
    again = lsf.run("bkill", str(running))
    assert again.returncode != 0 and again.stderr.strip() == "Job <%d>: Job has already finished" % running
    unknown = lsf.run("bkill", "99999")
    assert unknown.returncode != 0 and "No matching job found" in unknown.stderr


def test_bkill_plain_job_exit_code_and_array_element_and_zero(lsf):
    plain = lsf.bsub("sleep 30")
    array = lsf.bsub("-J", "k[1-3]", "sleep 30")
    lsf.wait(plain, ("RUN",)), lsf.wait(array, ("RUN",))
    assert lsf.run("bkill", '%d[2]' % array).stdout.strip() == "Job <%d[2]> is being terminated" % array
    lsf.wait('%d[2]' % array)
    assert [r["STAT"] for r in lsf.records(array)] == ["RUN", "EXIT", "RUN"]
    lsf.run("bkill", str(plain))
    assert lsf.wait(plain)["EXIT_CODE"] == "130"                       # bash dies of SIGINT
    assert lsf.run("bkill", "0").returncode == 0
    assert [r["STAT"] for r in lsf.wait(array)] == ["EXIT"] * 3


def test_brequeue_keeps_id_and_submit_time(lsf, tmp_path):
    jid = lsf.bsub("echo $LSB_JOBID >> runs; sleep 30")
    child = lsf.bsub("-w", "done(%d)" % jid, "true")
    lsf.wait(jid, ("RUN",))
    before = lsf.record(jid)
    assert lsf.run("brequeue", str(jid)).stdout == "Job <%d> is being requeued\n" % jid
    assert wait_for(lambda: len((tmp_path / "runs").read_text().split()) == 2)
    assert (tmp_path / "runs").read_text().split() == [str(jid)] * 2
    after = lsf.wait(jid, ("RUN",))
    assert after["SUBMIT_TIME"] == before["SUBMIT_TIME"] and after["JOBID"] == before["JOBID"]
    assert lsf.record(child)["STAT"] == "PEND"
    hist = lsf.run("bhist", "-l", "-UF", str(jid)).stdout
    assert "Signal <REQUEUE_PEND> requested by user or administrator" in hist
    assert "Pending: Job has been requeued;" in hist and hist.count("Starting (Pid") == 2
    lsf.run("bkill", str(jid), str(child))


def test_brequeue_e_reruns_an_exited_job(lsf, tmp_path):
    jid = lsf.bsub("n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 1 ]")
    assert lsf.wait(jid)["STAT"] == "EXIT"
    refused = lsf.run("brequeue", str(jid))
    assert refused.returncode != 0 and "Job has already finished" in refused.stderr
    assert lsf.run("brequeue", "-e", str(jid)).returncode == 0
    assert wait_for(lambda: (tmp_path / "n").read_text().strip() == "2")
    assert lsf.wait(jid)["STAT"] == "DONE"


def test_requeue_exit_values(lsf, tmp_path):
    jid = lsf.bsub("-Q", "3", "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 2 ] || exit 3")
    rec = lsf.wait(jid)
    assert rec["STAT"] == "DONE" and (tmp_path / "n").read_text().strip() == "3"


# ------------------------------------------------------------------------ history

def test_clean_period_then_only_bhist_knows_the_job(lsf):
    jid = lsf.bsub("true", LSF_DOUBLE_CLEAN_PERIOD="0.5")
    lsf.wait(jid)
    time.sleep(0.7)
    gone = lsf.run("bjobs", "-a", str(jid), LSF_DOUBLE_CLEAN_PERIOD="0.5")
    assert gone.returncode == 255 and gone.stderr.strip() == "Job <%d> is not found" % jid
    dep = lsf.run("bsub", "-w", "done(%d)" % jid, "true", LSF_DOUBLE_CLEAN_PERIOD="0.5")
    assert dep.returncode != 0 and "No matching job found. Job not submitted." in dep.stderr
    hist = lsf.run("bhist", "-l", "-n", "0", str(jid), LSF_DOUBLE_CLEAN_PERIOD="0.5")
    assert hist.returncode == 0 and "Done successfully." in hist.stdout


def test_bhist_long_format(lsf, tmp_path):
    ok = lsf.bsub("-J", "named", "echo a fairly long command line so that bhist has to wrap this; true")
    bad = lsf.bsub("exit 3")
    lsf.wait(ok), lsf.wait(bad)
    out = lsf.run("bhist", "-l", "-n", "0", str(ok)).stdout
    lines = out.splitlines()
    assert all(len(l) <= 79 for l in lines)
    assert lines[1].startswith("Job <%d>, Job Name <named>, User <" % ok)
    stamp = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d: "
    flat = lsf.run("bhist", "-l", "-UF", str(ok), str(bad)).stdout
    assert re.search(r"^%sSubmitted from host <[^>]+>, to Queue <normal>, CWD <[^>]+>;$" % stamp, flat, re.M)
    assert re.search(r"^%sDispatched to <[^>]+>, Effective RES_REQ <.*>;$" % stamp, flat, re.M)
    assert re.search(r"^%sStarting \(Pid \d+\);$" % stamp, flat, re.M)
    assert re.search(r"^%sDone successfully\. The CPU time used is [\d.]+ seconds;$" % stamp, flat, re.M)
    assert re.search(r"^%sExited with exit code 3\. The CPU time used is [\d.]+ seconds;$" % stamp, flat, re.M)
    assert re.search(r"^%sCompleted <exit>;$" % stamp, flat, re.M)
    assert re.search(r"^Summary of time in seconds spent in various states by  \w{3} \w{3} [ \d]\d ", flat, re.M)
    assert "  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL" in flat
    assert "-" * 78 in flat
    bkilled = lsf.bsub("-H", "true")
    lsf.run("bkill", str(bkilled))
    killed = lsf.run("bhist", "-l", "-UF", str(bkilled)).stdout
    assert re.search(r"Signal <KILL> requested by user or administrator <[^>]+>;", killed)
    assert "Completed <exit>; TERM_OWNER: job killed by owner." in killed
    assert lsf.run("bhist", "-l", "99999").returncode != 0


# ------------------------------------------------------------------------ scheduling, daemon

def test_slots_limit_serialises_jobs(lsf, tmp_path):
    ids = [lsf.bsub("date +%%s.%%N > s%d; sleep 0.3; date +%%s.%%N > e%d" % (i, i), LSF_DOUBLE_SLOTS="1")
           for i in range(3)]
    for jid in ids:
        lsf.wait(jid)
    spans = sorted((float((tmp_path / ("s%d" % i)).read_text()), float((tmp_path / ("e%d" % i)).read_text()))
                   for i in range(3))
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2))


def test_concurrent_submissions_get_unique_ids(lsf):
    ids, errors = [], []

    def submit():
        res = lsf.run("bsub", "-H", "true")
        (ids if res.returncode == 0 else errors).append(res.stdout)
    threads = [threading.Thread(target=submit) for _ in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    numbers = [int(SUBMITTED.match(s.strip()).group(1)) for s in ids]
    assert len(set(numbers)) == 10
    lsf.run("bkill", "0")


def test_daemon_is_detached_in_state_dir_and_exits_when_idle(lsf, tmp_path):
    work = tmp_path / "study-path-xyz"
    work.mkdir()
    jid = lsf.bsub("true", cwd=work, LSF_DOUBLE_IDLE_EXIT="1")
    pid = int((lsf.state / "mbatchd.pid").read_text())
    argv = _cmdline(pid).split(b"\0")
    assert argv[1].endswith(b"lsf_double.py") and argv[2:4] == [b"mbatchd", str(lsf.state).encode()]
    assert b"study-path-xyz" not in _cmdline(pid)
    assert os.readlink("/proc/%d/cwd" % pid) == str(lsf.state)
    assert os.getsid(pid) == pid
    lsf.wait(jid)
    assert wait_for(lambda: not (lsf.state / "mbatchd.pid").exists() and not _cmdline(pid), timeout=8)
    again = lsf.bsub("true")
    assert lsf.wait(again)["STAT"] == "DONE"


def test_jobs_get_default_signal_actions_even_when_mbatchd_was_started_ignoring_sigint(lsf, tmp_path):
    """A shell starts a background command with SIGINT and SIGQUIT ignored, and an ignored signal
    stays ignored across exec; a real execution daemon resets them for the jobs it starts."""
    started = subprocess.run(["bash", "-c", "bsub true > first.txt & wait"], env=lsf.env, cwd=tmp_path,
                             capture_output=True, text=True)
    assert started.returncode == 0 and SUBMITTED.match((tmp_path / "first.txt").read_text().strip())
    daemon = int((lsf.state / "mbatchd.pid").read_text())
    ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)", Path("/proc/%d/status" % daemon).read_text(), re.M).group(1), 16)
    assert ignored & (1 << (signal.SIGINT - 1)), "the test needs an mbatchd that ignores SIGINT"
    plain = lsf.bsub("sleep 30")
    lsf.wait(plain, ("RUN",))
    lsf.run("bkill", str(plain))
    assert lsf.wait(plain)["EXIT_CODE"] == "130"                       # bash died of the SIGINT


# --------------------------------------------------------------------------- busers, pending thresholds

def busers_table(text):
    """busers' table as {USER/GROUP: {column: value}}."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    return {row[0]: dict(zip(lines[0][1:], row[1:])) for row in lines[1:]}


def test_busers_w_shows_the_pending_thresholds_and_counts(lsf):
    me = lsf.run("whoami").stdout.strip()
    plain = lsf.run("busers")
    assert plain.returncode == 0 and plain.stdout.split()[:9] == \
        ["USER/GROUP", "JL/P", "MAX", "NJOBS", "PEND", "RUN", "SSUSP", "USUSP", "RSV"]
    assert "MPJOBS" not in plain.stdout
    unlimited = busers_table(lsf.run("busers", "-w", me).stdout)[me]
    assert (unlimited["MPEND"], unlimited["MPJOBS"], unlimited["PJOBS"]) == ("-", "-", "0")
    lsf.bsub("-H", "-J", "held[1-3]", "-n", "2", "true")
    lsf.bsub("-H", "true")
    limited = busers_table(lsf.run("busers", "-w", me, LSF_DOUBLE_MAX_PEND_JOBS="40",
                                   LSF_DOUBLE_MAX_PEND_SLOTS="100").stdout)[me]
    # held (PSUSP) elements are pending: 4 jobs, 3 * 2 + 1 tasks
    assert limited == {"JL/P": "-", "MAX": "-", "NJOBS": "7", "PEND": "7", "RUN": "0", "SSUSP": "0",
                       "USUSP": "0", "RSV": "0", "MPEND": "100", "PJOBS": "4", "MPJOBS": "40"}


def test_busers_of_an_unknown_user_prints_no_row(lsf):
    res = lsf.run("busers", "-w", "no_such_user_here")
    assert res.returncode == 255 and res.stdout == "" and "no_such_user_here" in res.stderr


def test_bsub_past_the_pending_threshold_is_retried_then_refused(lsf):
    limit = dict(LSF_DOUBLE_MAX_PEND_JOBS="3", LSF_DOUBLE_SUB_TRY_INTERVAL="0.1", LSB_NTRIES="2")
    lsf.bsub("-H", "-J", "two[1-2]", "true", **limit)
    res = lsf.run("bsub", "-H", "-J", "more[1-2]", "true", **limit)    # 2 + 2 > 3: every element counts
    assert res.returncode == 255 and res.stdout == ""
    # LSB_NTRIES=2: two attempts in all, one retry between them
    assert res.stderr.splitlines() == ["Pending job threshold reached. Retrying in 0.1 seconds...",
                                       "Pending job threshold reached. Job not submitted."]
    lsf.bsub("-H", "true", **limit)                                    # 2 + 1 fits
    slots = dict(limit, LSF_DOUBLE_MAX_PEND_JOBS="", LSF_DOUBLE_MAX_PEND_SLOTS="4")
    assert lsf.run("bsub", "-H", "-n", "2", "true", **slots).returncode == 255   # 3 tasks + 2 > 4


def test_a_refused_bsub_goes_through_once_a_pending_job_leaves(lsf):
    limit = dict(LSF_DOUBLE_MAX_PEND_JOBS="1", LSF_DOUBLE_SUB_TRY_INTERVAL="0.2")
    first = lsf.bsub("-H", "true", **limit)
    waiting = subprocess.Popen(["bsub", "true"], env=dict(lsf.env, **limit), cwd=lsf.tmp,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert waiting.poll() is None          # without LSB_NTRIES bsub keeps trying
        lsf.run("bkill", str(first))
        out, err = waiting.communicate(timeout=10)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert SUBMITTED.match(out.strip()) and "Pending job threshold reached" in err
