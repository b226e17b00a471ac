"""maestro_compile.runner: how scheduler commands and the study's scripts are run, and how their
failures become one clear error. Fake commands are small scripts in tmp_path."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from maestro_compile.errors import (EXIT_SCHEDULER, SchedulerCommandError,
                                    SchedulerUnavailableError, SubmitError)
from maestro_compile.runner import Command, chunks, query, run, run_script, run_unchecked


def fake(tmp_path: Path, name: str, body: str) -> str:
    """An executable bash script ``name`` with ``body``; its path."""
    path = tmp_path / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return str(path)


def test_a_missing_program(tmp_path):
    missing = str(tmp_path / "sacct-nowhere")
    with pytest.raises(SchedulerUnavailableError) as info:
        run(Command((missing, "-j", "1"), "Slurm"))
    assert info.value.exit_code == EXIT_SCHEDULER == 69
    assert str(info.value).startswith(f"{missing} is not installed here")
    assert "Slurm cluster" in str(info.value)


def test_a_missing_program_on_path():
    with pytest.raises(SchedulerUnavailableError, match=r"^no-such-scheduler-command-xyz is not installed here"):
        run(Command(("no-such-scheduler-command-xyz",), "LSF"))


def test_a_program_that_cannot_be_run_is_a_clear_error(tmp_path):
    path = tmp_path / "sacct"
    path.write_text("#!/bin/sh\necho hi\n")
    path.chmod(0o644)
    with pytest.raises(SchedulerCommandError, match="cannot run .*sacct: Permission denied"):
        run(Command((str(path),), "Slurm"))


def test_a_command_that_does_not_answer_in_time(tmp_path):
    slow = fake(tmp_path, "squeue", "sleep 5\n")
    with pytest.raises(SchedulerCommandError) as info:
        run(Command((slow, "-j", "1"), "Slurm", timeout=1))
    message = str(info.value)
    assert f"{slow} did not answer within 1 s: is the Slurm controller up?" in message
    assert f"(command: {slow} -j 1)" in message
    assert info.value.returncode is None and info.value.exit_code == EXIT_SCHEDULER


def test_optional_commands_give_no_answer_instead_of_failing(tmp_path):
    failing = fake(tmp_path, "sacct", "echo partial output\necho 'accounting is disabled' >&2\nexit 1\n")
    assert run(Command((failing,), "Slurm", optional=True)) == ""
    slow = fake(tmp_path, "slow", "sleep 5\n")
    assert run(Command((slow,), "Slurm", optional=True, timeout=0.3)) == ""
    good = fake(tmp_path, "good", "echo answer\n")
    assert run(Command((good,), "Slurm", optional=True)) == "answer\n"


def test_partial_answers(tmp_path):
    command = fake(tmp_path, "bjobs", "echo '1 DONE'\necho 'Job <2> is not found' >&2\nexit 255\n")
    assert run(Command((command,), "LSF", partial=True)) == "1 DONE\n"
    silent = fake(tmp_path, "silent", "echo 'Job <2> is not found' >&2\nexit 255\n")
    with pytest.raises(SchedulerCommandError, match="exited 255: Job <2> is not found"):
        run(Command((silent,), "LSF", partial=True))


def test_tolerated_errors_are_case_insensitive(tmp_path):
    command = fake(tmp_path, "squeue", "echo '5|RUNNING|None|'\n"
                                       "echo 'slurm_load_jobs error: INVALID JOB ID specified' >&2\nexit 1\n")
    assert run(Command((command,), "Slurm", tolerate=("Invalid job id",))) == "5|RUNNING|None|\n"
    with pytest.raises(SchedulerCommandError):
        run(Command((command,), "Slurm", tolerate=("socket timed out",)))


def test_an_untolerated_failure_names_the_command_its_status_and_its_error(tmp_path):
    command = fake(tmp_path, "sacct", "echo 'Connection refused' >&2\nexit 2\n")
    with pytest.raises(SchedulerCommandError) as info:
        run(Command((command, "-j", "7,8"), "Slurm"))
    error = info.value
    assert (error.returncode, error.stderr, error.argv) == (2, "Connection refused\n", [command, "-j", "7,8"])
    assert str(error) == f"{command} exited 2: Connection refused (command: {command} -j 7,8)"
    assert error.exit_code == EXIT_SCHEDULER


def test_the_error_without_stderr_shows_stdout(tmp_path):
    command = fake(tmp_path, "flux", "echo 'flux-jobs: ERROR: Unable to connect'\nexit 1\n")
    with pytest.raises(SchedulerCommandError, match="exited 1: flux-jobs: ERROR: Unable to connect"):
        run(Command((command,), "Flux"))


def test_a_very_long_command_line_is_shortened_in_the_message(tmp_path):
    command = fake(tmp_path, "scancel", "echo 'Invalid job id specified' >&2\nexit 1\n")
    ids = [str(1_000_000 + i) for i in range(10_000)]
    with pytest.raises(SchedulerCommandError) as info:
        run(Command((command, *ids), "Slurm"))
    message = str(info.value)
    assert len(message) < 300 + len(command) + 100
    assert message.endswith("...)")
    assert ids[0] in message and ids[-1] not in message
    assert len(info.value.argv) == 10_001    # the error keeps the whole command for who needs it


def test_the_environment_is_passed(tmp_path):
    command = fake(tmp_path, "show", 'echo "$FLUX_URI"\n')
    assert run(Command((command,), "Flux", env={"FLUX_URI": "local:///tmp/x", "PATH": "/usr/bin:/bin"})) == \
        "local:///tmp/x\n"


def test_run_unchecked_returns_failures_for_the_caller_to_judge(tmp_path):
    command = fake(tmp_path, "scancel", "echo out\necho err >&2\nexit 3\n")
    proc = run_unchecked(Command((command,), "Slurm"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_commands_get_no_standard_input(tmp_path):
    command = fake(tmp_path, "reader", "cat; echo done\n")
    assert run(Command((command,), "Slurm", timeout=5)) == "done\n"


# --- chunks and query ---

def test_chunks():
    assert [list(c) for c in chunks(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []


def test_query_asks_in_chunks(tmp_path):
    log = tmp_path / "calls"
    command = fake(tmp_path, "sacct", f"echo $# >> '{log}'\nfor id in \"$@\"; do echo \"$id|COMPLETED\"; done\n")
    ids = [str(i) for i in range(1, 1235)]

    def build(chunk):
        return Command((command, *chunk), "Slurm")

    def parse(text):
        return dict(line.split("|") for line in text.splitlines())
    found = query(ids, 500, build, parse)
    assert log.read_text().split() == ["500", "500", "234"]
    assert found == {i: "COMPLETED" for i in ids}


def test_query_of_nothing_runs_nothing(tmp_path):
    log = tmp_path / "calls"
    command = fake(tmp_path, "sacct", f"echo $# >> '{log}'\n")
    assert query([], 500, lambda chunk: Command((command, *chunk), "Slurm"), lambda text: {}) == {}
    assert not log.exists()


def test_query_stops_at_the_first_failing_chunk(tmp_path):
    log = tmp_path / "calls"
    command = fake(tmp_path, "sacct", f"echo $# >> '{log}'\necho 'Connection refused' >&2\nexit 1\n")
    with pytest.raises(SchedulerCommandError, match="Connection refused"):
        query([str(i) for i in range(10)], 4, lambda chunk: Command((command, *chunk), "Slurm"), lambda text: {})
    assert log.read_text().split() == ["4"]


# --- the study's own scripts ---

def test_run_script_failure_carries_its_output(tmp_path):
    script = tmp_path / "submit.sh"
    script.write_text("echo 'queued J0'\necho 'sbatch: error: invalid partition' >&2\nexit 3\n")
    with pytest.raises(SubmitError) as info:
        run_script(script, tmp_path)
    assert str(info.value) == "sbatch: error: invalid partition\nqueued J0"


def test_run_script_failure_without_output(tmp_path):
    script = tmp_path / "resubmit-1.sh"
    script.write_text("exit 4\n")
    with pytest.raises(SubmitError, match=r"^resubmit-1\.sh exited 4$"):
        run_script(script, tmp_path)


def test_run_script_success_returns_its_output_stripped(tmp_path):
    script = tmp_path / "submit.sh"
    script.write_text('echo\necho "  started $# in $(basename "$PWD") $STUDY_FLAG  "\necho\n')
    workdir = tmp_path / "here"
    workdir.mkdir()
    env = {"PATH": "/usr/bin:/bin", "STUDY_FLAG": "on"}
    assert run_script(script, workdir, ["--jobs", "2"], env=env) == "started 2 in here on"


def test_run_script_does_not_wait_for_a_detached_child(tmp_path):
    """submit.sh on the local backend leaves its runner behind; its open output must not block us."""
    script = tmp_path / "submit.sh"
    script.write_text("sleep 3 &\necho started\n")
    begin = time.monotonic()
    assert run_script(script, tmp_path) == "started"
    assert time.monotonic() - begin < 2.5


def test_run_script_that_cannot_start(tmp_path):
    with pytest.raises(SubmitError, match="cannot run"):
        run_script(tmp_path / "submit.sh", tmp_path / "no-such-dir")


def test_python_fake_command(tmp_path):
    """A fake scheduler command may be any program: here the interpreter running the tests."""
    assert run(Command((sys.executable, "-c", "print('1|RUNNING')"), "Slurm")) == "1|RUNNING\n"


def _signal_soon(signum, delay=0.5):
    import os
    import threading
    timer = threading.Timer(delay, lambda: os.kill(os.getpid(), signum))
    timer.start()
    return timer


def test_a_signal_during_a_script_is_passed_on_and_its_rollback_is_waited_for(tmp_path):
    import signal as signals
    from maestro_compile.errors import InterruptedSubmitError
    script = tmp_path / "submit.sh"
    script.write_text("trap 'echo rolling back >&2; sleep 0.5; echo rolled back >&2; exit 1' TERM\n"
                      "for i in $(seq 100); do sleep 0.1; done\n")
    _signal_soon(signals.SIGINT)
    with pytest.raises(InterruptedSubmitError) as info:
        run_script(script, tmp_path)
    assert info.value.exit_code == 130
    assert "interrupted by SIGINT" in str(info.value) and "rolled back" in str(info.value)


def test_a_signal_after_the_script_did_its_work_is_not_reported_as_a_rollback(tmp_path):
    import signal as signals
    script = tmp_path / "submit.sh"
    script.write_text("trap '' TERM\nsleep 1\necho submitted everything\n")
    _signal_soon(signals.SIGTERM)
    out = run_script(script, tmp_path)
    assert out.startswith("submitted everything") and "nothing was rolled back" in out
