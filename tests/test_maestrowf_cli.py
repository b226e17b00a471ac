"""maestrowf 1.2.1's command line as its users type it: every flag parses and does its nearest
meaning here (docs/migrating.md has the table; tests/test_docs.py runs the table's examples).

Everything runs through the real CLI in a new interpreter, on the local backend, except the
`update --throttle` tests at the end, which use the real Slurm cluster (marked `slurm`)."""
from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import maestro, ok, states, wait_until, write_study_spec
from maestro_compile import cli

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "examples" / "hello_world" / "hello_world.yaml"
HELLO_BYE = ROOT / "examples" / "hello_world" / "hello_bye_parameterized.yaml"
PROMPT = "Would you like to launch the study? [yn]"


def parses(argv):
    """The namespace the real parser gives for argv, after maestrowf's spellings are resolved."""
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    from maestro_compile import commands
    commands.resolve(args, parser)
    return args


def sleeper(tmp_path: Path, name: str, seconds: int = 60) -> Path:
    return write_study_spec(tmp_path, name, f"""
        study:
            - name: nap
              description: sleeps
              run:
                  cmd: sleep {seconds}
        """)


def submitted(study: Path) -> bool:
    return (study / ".maestro" / "submitted").exists()


# --------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("argv", [
    ["-l", "logs", "-d", "3", "-c", "run", "-a", "2", "-r", "1", "-t", "2", "-s", "5", "--dry", "-p", "gen.py",
     "--pargs", "N:1", "-o", "out", "-fg", "--hashws", "-y", "--usetmp", "spec.yaml"],
    ["--logpath", "logs", "--debug_lvl", "2", "--logstdout", "run", "--attempts", "1", "--rlimit", "0",
     "--throttle", "0", "--sleeptime", "60", "--pgen", "gen.py", "--out", "out", "--autono", "spec.yaml"],
    ["status", "a", "b", "--layout", "narrow", "--disable-theme", "--disable-pager"],
    ["status", "--layout", "legacy", "a"],
    ["cancel", "a", "b"],
    ["cancel", "-y", "a"],
    ["update", "a", "b", "--throttle", "4", "--rlimit", "2", "--sleep", "30"],
    ["update", "a", "b", "--throttle", "4", "--throttle", "2"],
], ids=["run-short", "run-long", "status", "status-legacy", "cancel", "cancel-y", "update", "update-per-dir"])
def test_every_maestrowf_flag_parses(argv, capsys):
    parses(argv)


def test_the_spellings_map_onto_ours(capsys):
    args = parses(["run", "-fg", "-s", "7", "-a", "3", "spec.yaml"])
    assert args.wait and args.poll == 7 and args.retries == 2
    assert parses(["-d", "1", "status", "x"]).debug           # -d 1: tracebacks, like --debug
    assert parses(["--debug", "status", "x"]).debug           # --debug still works
    assert not parses(["-d", "2", "status", "x"]).debug
    assert parses(["compile", "spec.yaml", "-t", "0"]).throttle == 0   # maestrowf's "no limit"


@pytest.mark.parametrize("argv", [
    ["run", "-y", "-n", "spec.yaml"],                  # the two answers at once
    ["run", "-a", "0", "spec.yaml"],                   # maestrowf: attempts >= 1
    ["run", "-a", "2", "--retries", "1", "spec.yaml"],  # two spellings of one thing
    ["run", "-s", "0", "spec.yaml"],
    ["-d", "6", "status", "x"],
    ["status", "a", "--layout", "wide"],
    ["status", "a", "b", "--csv", "s.csv"],            # one CSV file, two studies
    ["update", "a"],                                   # nothing to update
    ["update", "a", "b", "c", "--throttle", "1", "--throttle", "2"],   # neither once nor once per dir
    ["update", "a", "--throttle", "-1"],
])
def test_contradictions_are_usage_errors(argv):
    result = maestro(*argv)
    assert result.returncode == 64, result.stderr
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


def test_version_short_flag():
    assert ok(maestro("-v")).stdout.startswith("maestro_compile ")


# --------------------------------------------------------------------------- run

def test_run_y_fg_runs_the_study_in_the_foreground(tmp_path):
    result = ok(maestro("run", "-y", "-fg", HELLO_BYE, "-o", tmp_path / "s"))
    assert "8 node(s): 8 FINISHED" in result.stdout
    assert PROMPT not in result.stderr and result.stderr == ""
    assert set(states(tmp_path / "s").values()) == {"FINISHED"}


def test_fg_exits_2_when_a_step_fails(tmp_path):
    spec = write_study_spec(tmp_path, "fails", """
        study:
            - name: bad
              description: exits 3
              run:
                  cmd: exit 3
        """)
    result = maestro("run", "-fg", spec, "-o", tmp_path / "s")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "1 FAILED" in result.stdout


def test_fg_exits_3_when_the_study_is_cancelled(tmp_path):
    study = tmp_path / "s"
    child = subprocess.Popen([sys.executable, "-m", "maestro_compile", "run", "-y", "-fg", "-s", "0.2",
                              str(sleeper(tmp_path, "nap")), "-o", str(study)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: states(study).get("nap") == "RUNNING" if (study / "study.json").exists() else False,
                   "the step to run", 60)
        ok(maestro("cancel", study))
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 3, out + err
    assert "1 CANCELLED" in out


@pytest.mark.parametrize("flag", ["--dry", "-n", "--autono"])
def test_dry_and_no_compile_without_submitting(flag, tmp_path):
    study = tmp_path / "s"
    result = ok(maestro("run", flag, "-fg", HELLO, "-o", study))
    assert (study / "submit.sh").is_file() and not submitted(study)
    assert f"not submitted ({flag if flag != '--autono' else '-n'})" in result.stdout
    assert f"maestro submit {study}" in result.stdout
    assert states(study) == {"hello_world": "INITIALIZED"}
    ok(maestro("submit", study))        # and it can be submitted later
    wait_until(lambda: states(study) == {"hello_world": "FINISHED"}, "the submitted study to finish", 60)


def test_without_a_terminal_run_submits_without_asking(tmp_path):
    result = ok(maestro("run", HELLO, "-o", tmp_path / "s"))   # stdin is /dev/null
    assert PROMPT not in result.stderr + result.stdout
    assert submitted(tmp_path / "s")


def run_on_terminal(argv, answer: str):
    """Run the CLI with a pseudo-terminal as standard input; answer the prompt once it shows."""
    master, slave = os.openpty()
    try:
        child = subprocess.Popen([sys.executable, "-m", "maestro_compile", *map(str, argv)], stdin=slave,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(slave)
        seen = ""
        deadline = time.monotonic() + 60
        while PROMPT not in seen and time.monotonic() < deadline and child.poll() is None:
            ready, _, _ = select.select([child.stderr], [], [], 0.5)
            if ready:
                seen += os.read(child.stderr.fileno(), 4096).decode()
        os.write(master, answer.encode())
        out, err = child.communicate(timeout=60)
        return child.returncode, out, seen + err
    finally:
        os.close(master)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("answer, launched", [("y\n", True), ("no\n", False), ("maybe\nn\n", False)])
def test_on_a_terminal_run_asks_like_maestro(answer, launched, tmp_path):
    study = tmp_path / "s"
    code, out, err = run_on_terminal(["run", HELLO, "-o", study], answer)
    assert code == 0, out + err
    assert err.count(PROMPT) == (2 if answer.startswith("maybe") else 1)
    assert submitted(study) == launched
    assert ("not submitted" in out) != launched


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_on_a_terminal_y_does_not_ask(tmp_path):
    code, out, err = run_on_terminal(["run", "-y", HELLO, "-o", tmp_path / "s"], "")
    assert code == 0 and PROMPT not in err and submitted(tmp_path / "s")


def counting_failure(tmp_path: Path, failures: int) -> Path:
    """A step that fails ``failures`` times (counted in a file of its workspace), then succeeds."""
    return write_study_spec(tmp_path, f"flaky{failures}", f"""
        study:
            - name: flaky
              description: fails {failures} times first
              run:
                  cmd: |
                      n=$(cat tries 2>/dev/null || echo 0); echo $((n + 1)) > tries
                      [ "$n" -ge {failures} ]
        """)


@pytest.mark.parametrize("attempts, code", [(3, 0), (2, 2)])
def test_attempts_runs_a_failing_step_that_many_times_in_all(attempts, code, tmp_path):
    study = tmp_path / "s"
    result = maestro("run", "-y", "-fg", "-a", attempts, counting_failure(tmp_path, 2), "-o", study)
    assert result.returncode == code, result.stdout + result.stderr
    assert (study / "flaky" / "tries").read_text().strip() == str(min(attempts, 3))
    assert f"note: -a {attempts}: " in result.stderr and f"(--retries {attempts - 1})" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sleeptime_is_the_poll_interval_of_fg(tmp_path):
    result = ok(maestro("run", "-y", "-fg", "-s", "0.1", HELLO, "-o", tmp_path / "a"))
    assert result.stderr == ""                 # with -fg the meaning holds: no note
    result = ok(maestro("run", "-y", "-s", "30", HELLO, "-o", tmp_path / "b"))
    assert result.stderr.startswith("note: -s 30: ") and len(result.stderr.splitlines()) == 1


def test_usetmp_is_accepted_with_a_note(tmp_path):
    result = ok(maestro("run", "-y", "-fg", "--usetmp", HELLO, "-o", tmp_path / "s"))
    assert result.stderr.startswith("note: --usetmp: ") and len(result.stderr.splitlines()) == 1
    assert (tmp_path / "s" / "hello_world" / "hello_world.sh").is_file()


def test_throttle_on_a_local_run_limits_the_steps_at_once(tmp_path):
    result = ok(maestro("run", "-y", "-t", "1", HELLO_BYE, "-o", tmp_path / "a"))
    assert "up to 1 at a time" in result.stdout
    result = ok(maestro("run", "-y", "-t", "1", "-j", "2", HELLO_BYE, "-o", tmp_path / "b"))
    assert "up to 2 at a time" in result.stdout       # an explicit -j wins
    for study in ("a", "b"):
        wait_until(lambda: (tmp_path / study / ".maestro" / "runner.done").exists(), "the runner to end", 60)


def test_throttle_on_a_scheduler_run_says_it_is_per_array(tmp_path):
    study = tmp_path / "s"
    result = maestro("run", "-y", "-t", "2", HELLO_BYE, "--backend", "slurm", "--max-array-size", "100",
                     "-o", study)
    # no sbatch here, or a real one: either way the note comes before the submission
    assert "note: -t 2: at most 2 task(s) of each job array run at once" in result.stderr
    assert "--array=0-3%2" in (study / "submit.sh").read_text()


def test_throttle_zero_means_no_limit(tmp_path):
    ok(maestro("compile", HELLO_BYE, "--backend", "slurm", "--max-array-size", "100", "-t", "0",
               "-o", tmp_path / "s"))
    text = (tmp_path / "s" / "submit.sh").read_text()
    assert "--array=0-3 " in text and "%" not in re.findall(r"--array=\S+", text)[0]


# --------------------------------------------------------------------------- global options

def test_logpath_appends_the_messages_to_a_file(tmp_path):
    log = tmp_path / "logs" / "run.log"
    result = ok(maestro("-l", log, "run", "-y", "-fg", "--usetmp", HELLO, "-o", tmp_path / "s"))
    text = log.read_text()
    assert "maestro -l" in text.splitlines()[0]
    assert "1 node(s): 1 FINISHED" in text and "note: --usetmp" in text
    assert result.stdout.strip().splitlines()[-1] in text
    ok(maestro("--logpath", tmp_path / "logs", "status", tmp_path / "s"))   # a directory: maestro.log in it
    assert "1 FINISHED" in (tmp_path / "logs" / "maestro.log").read_text()


def test_logpath_that_cannot_be_written_is_an_error(tmp_path):
    (tmp_path / "file").write_text("")
    result = maestro("-l", tmp_path / "file" / "x.log", "validate", HELLO)
    assert result.returncode == 1
    assert result.stderr.startswith("error: -l ") and "Traceback" not in result.stderr


def test_debug_level_4_and_5_hide_warnings_and_notes(tmp_path):
    spec = write_study_spec(tmp_path, "typo", """
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(NOPE)
        """)
    assert "warning:" in ok(maestro("validate", spec)).stderr
    assert "warning:" in ok(maestro("-d", "3", "validate", spec)).stderr
    for level in ("4", "5"):
        assert ok(maestro("-d", level, "validate", spec)).stderr == ""
        assert ok(maestro("-d", level, "run", "-n", "--usetmp", spec, "-o", tmp_path / level)).stderr == ""
    assert maestro("-d", "5", "validate", tmp_path / "missing.yaml").stderr.startswith("error: ")


def test_logstdout_changes_nothing(tmp_path):
    assert ok(maestro("-c", "validate", HELLO)).stdout == ok(maestro("validate", HELLO)).stdout


# --------------------------------------------------------------------------- status and cancel

@pytest.fixture
def two_studies(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ok(maestro("run", "-y", "-fg", HELLO_BYE, "-o", a))
    ok(maestro("run", "-n", HELLO, "-o", b))
    return a, b


def test_status_reports_every_directory(two_studies, tmp_path):
    a, b = two_studies
    result = ok(maestro("status", a, b))
    assert result.stdout.index(f"==> {a} <==") < result.stdout.index("8 node(s): 8 FINISHED") \
        < result.stdout.index(f"==> {b} <==") < result.stdout.index("1 node(s): 1 INITIALIZED")
    assert ok(maestro("status", a)).stdout.startswith("Step Name")     # one directory: no heading
    result = maestro("status", a, tmp_path / "missing", b)
    assert result.returncode == 1
    assert "8 FINISHED" in result.stdout and "1 INITIALIZED" in result.stdout
    assert result.stderr.startswith("error: ") and str(tmp_path / "missing") in result.stderr


def test_status_json_of_several_directories_is_one_array(two_studies):
    a, b = two_studies
    data = json.loads(ok(maestro("status", a, b, "--json")).stdout)
    assert [d["directory"] for d in data] == [str(a), str(b)]
    assert json.loads(ok(maestro("status", a, "--json")).stdout)["directory"] == str(a)


def header(text: str):
    return text.splitlines()[0].split("  ")


def test_status_layouts(two_studies):
    a, _ = two_studies
    flat = ok(maestro("status", a)).stdout
    assert flat == ok(maestro("status", a, "--layout", "flat", "--disable-theme", "--disable-pager")).stdout
    legacy = ok(maestro("status", a, "--layout", "legacy")).stdout
    narrow = ok(maestro("status", a, "--layout", "narrow")).stdout
    names = lambda text: [w for w in re.split(r"\s{2,}", text.splitlines()[0].strip())]  # noqa: E731
    assert names(legacy) == ["Step Name", "Job ID", "Workspace", "State", "Run Time", "Elapsed Time", "Start Time",
                             "Submit Time", "End Time", "Number Restarts"]
    assert "node(s):" not in legacy and "node(s): 8 FINISHED" in flat
    assert names(narrow) == ["Step Name", "State", "Job ID", "Run Time"]
    assert max(map(len, narrow.splitlines())) < 80 < max(map(len, flat.splitlines()))
    assert "8 node(s): 8 FINISHED" in narrow


def test_narrow_layout_keeps_the_reason(tmp_path):
    spec = write_study_spec(tmp_path, "fails", """
        study:
            - name: bad
              description: exits 3
              run:
                  cmd: exit 3
        """)
    maestro("run", "-y", "-fg", spec, "-o", tmp_path / "s")
    narrow = ok(maestro("status", tmp_path / "s", "--layout", "narrow")).stdout
    assert "Reason" in narrow.splitlines()[0] and "exit code 3" in narrow


def test_cancel_several_running_studies(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ok(maestro("run", "-y", sleeper(tmp_path, "nap1"), "-o", a))
    ok(maestro("run", "-y", sleeper(tmp_path, "nap2"), "-o", b))
    for study in (a, b):
        wait_until(lambda: states(study) == {"nap": "RUNNING"}, f"{study.name} to run", 60)
    result = ok(maestro("cancel", "-y", a, b))
    assert result.stdout.count("cancelled the study") == 2
    assert states(a) == states(b) == {"nap": "CANCELLED"}


def test_cancel_reports_each_directory_and_exits_with_the_worst(two_studies, tmp_path):
    a, b = two_studies
    result = maestro("cancel", a, b)
    assert result.returncode == 1                       # b was never submitted
    assert "nothing to cancel: the study is no longer running" in result.stdout
    assert f"error: {b}: the study has not been submitted" in result.stderr


# --------------------------------------------------------------------------- update

def test_update_of_an_ended_local_study_is_a_note(two_studies):
    a, _ = two_studies
    result = ok(maestro("update", a, "--throttle", "4"))
    assert result.stderr == "note: --throttle 4: nothing to change: the study is no longer running\n"
    result = ok(maestro("update", a, "--sleep", "30"))
    assert result.stderr.startswith("note: --sleep 30: nothing to change: no conductor polls")


def test_update_of_a_running_local_study_is_refused(tmp_path):
    study = tmp_path / "s"
    ok(maestro("run", "-y", sleeper(tmp_path, "nap"), "-o", study))
    try:
        result = maestro("update", study, "--throttle", "4")
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: {study}: the local runner's limit (-j) is fixed while it runs")
    finally:
        maestro("cancel", study)


def test_update_refuses_what_cannot_change(two_studies, tmp_path):
    a, b = two_studies
    result = maestro("update", a, "--rlimit", "3")
    assert result.returncode == 1 and "--rlimit cannot be changed after compiling" in result.stderr
    result = maestro("update", b, "--throttle", "2")
    assert result.returncode == 1 and "has not been submitted" in result.stderr and "-t 2" in result.stderr
    ok(maestro("run", "-n", HELLO, "--backend", "flux", "-o", tmp_path / "f"))
    (tmp_path / "f" / ".maestro").mkdir(exist_ok=True)
    (tmp_path / "f" / ".maestro" / "submitted").write_text("1700000000\n")
    result = maestro("update", tmp_path / "f", "--throttle", "2")
    assert result.returncode == 1 and "Flux has no job arrays" in result.stderr
    assert "Traceback" not in result.stderr


def test_update_options_once_per_directory(two_studies, tmp_path):
    a, b = two_studies
    result = maestro("update", a, b, "--sleep", "5", "--sleep", "6")
    assert result.returncode == 0
    assert "--sleep 5:" in result.stderr and "--sleep 6:" in result.stderr


def test_throttle_outcomes_as_schedulers_answer():
    """What scontrol and bmod print (scontrol's from the test cluster, Slurm 22.05)."""
    from maestro_compile.backends import get_backend
    slurm, lsf = get_backend("slurm"), get_backend("lsf")
    assert slurm.throttle_argv("105", 3) == ["scontrol", "update", "JobId=105", "ArrayTaskThrottle=3"]
    assert slurm.throttle_outcome(0, "") is True
    assert slurm.throttle_outcome(1, "105_0: Job has already finished\n105_1-3: No error\n") is True
    assert slurm.throttle_outcome(1, "103_1: Job has already finished\n") is False
    assert slurm.throttle_outcome(1, "Invalid job id specified for job 999999\n") is False
    assert slurm.throttle_outcome(1, "slurm_update error: Access/permission denied\n") is None
    assert lsf.throttle_argv("123", 2) == ["bmod", "-J", "%2", "123"]
    assert lsf.throttle_outcome(255, "Job <123>: Job has already finished\n") is False
    assert lsf.throttle_outcome(255, "Job <123>: User permission denied\n") is None


# --------------------------------------------------------------------------- update on Slurm

def scontrol_show(array_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", array_id], capture_output=True, text=True, timeout=60).stdout


def scontrol_throttles(array_id: str):
    return set(re.findall(r"ArrayTaskThrottle=(\d+)", scontrol_show(array_id)))


@pytest.mark.slurm
def test_update_throttle_on_slurm(slurm_cluster, tmp_path):
    spec = write_study_spec(tmp_path, "throttled", """
        global.parameters:
            N:
                values: [1, 2, 3, 4, 5, 6]
                label: N.%%
        study:
            - name: nap
              description: sleeps
              run:
                  cmd: echo $(N); sleep 20
                  procs: 1
        """)
    study = tmp_path / "s"
    result = ok(maestro("run", "-y", "-t", "1", spec, "--backend", "slurm", "-o", study))
    assert "note: -t 1: at most 1 task(s) of each job array" in result.stderr
    array_id = (study / "jobs.tsv").read_text().split()[2].split("_")[0]
    try:
        assert scontrol_throttles(array_id) == {"1"}
        wait_until(lambda: list(states(study).values()).count("RUNNING") == 1, "1 task to run", 60)
        result = ok(maestro("update", study, "--throttle", "2"))      # the cluster has 2 CPUs
        assert f"throttle of 1 job array(s) ({array_id}) changed with scontrol: at most 2" in result.stdout
        assert scontrol_throttles(array_id) == {"2"}
        wait_until(lambda: list(states(study).values()).count("RUNNING") == 2, "2 tasks to run at once", 60)
        result = ok(maestro("update", study, "--throttle", "0"))    # 0: Slurm's "no limit"
        assert "changed with scontrol: no limit" in result.stdout
        assert scontrol_throttles(array_id) == set()                 # scontrol shows no throttle then
        assert f"ArrayJobId={array_id}" in scontrol_show(array_id)
        assert maestro("update", study, "--rlimit", "2").returncode == 1
    finally:
        maestro("cancel", study)
    wait_until(lambda: "PENDING" not in states(study).values() and "RUNNING" not in states(study).values(),
               "the study to end", 120)
    result = ok(maestro("update", study, "--throttle", "2"))
    assert result.stderr == "note: --throttle 2: nothing to change: every job array of the study has ended\n"
