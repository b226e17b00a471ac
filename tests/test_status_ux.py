"""`maestro status` for big studies, through the real CLI on real local runs: --summary (counts
per step and state, the nodes that did not finish, --limit), the filters --step and --state (with
--json, --csv and --summary), --watch (piped, on a terminal, Ctrl-C), and `maestro submit` given a
spec file."""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers
from helpers import maestro, ok

CLEAR_SCREEN = "\x1b[H\x1b[2J"
GATE_SECONDS = 15

FAILING = """\
    study:
      - name: work
        description: X above 3 fails
        run:
          cmd: test $(X) -le 3
      - name: post
        description: after work
        run:
          cmd: echo post
          depends: [work]
    global.parameters:
      X:
        values: [1, 2, 3, 4, 5, 6, 7]
        label: X.%%
    """


def gated_spec(root: Path) -> Path:
    gate = root / "gate"
    wait = (f"for _ in $(seq {GATE_SECONDS * 20}); do [ -e {gate} ] && break; sleep 0.05; done; "
            f"[ -e {gate} ] || exit 1")
    return helpers.write_study_spec(root, "gated", f"""\
        study:
          - name: slow
            description: waits for the gate
            run:
              cmd: {wait}
        """)


@pytest.fixture(scope="module")
def ended(tmp_path_factory) -> Path:
    """A local study that ran to its end: 3 of 7 work nodes finished, 4 failed, 4 post nodes cancelled."""
    root = tmp_path_factory.mktemp("ended")
    spec = helpers.write_study_spec(root, "failing", FAILING)
    result = maestro("run", spec, "-o", root / "study", "--wait")
    assert result.returncode == 2, result.stdout + result.stderr
    return root / "study"


@pytest.fixture
def running(tmp_path):
    """A local study whose one node runs until the test opens the gate."""
    study = tmp_path / "study"
    ok(maestro("run", gated_spec(tmp_path), "-o", study))
    yield study
    (tmp_path / "gate").touch()
    helpers.wait_until(lambda: (study / ".maestro" / "runner.done").exists(), "the runner to end", 30)


def lines(text: str) -> list:
    return [" ".join(line.split()) for line in text.splitlines()]


# --------------------------------------------------------------------------- --summary

def test_summary_counts_per_step_and_lists_what_did_not_finish(ended):
    out = ok(maestro("status", ended, "--summary", "--limit", "3")).stdout
    shown = lines(out)
    assert shown[:4] == ["Step Nodes FINISHED FAILED CANCELLED", shown[1], "work 7 3 4 0", "post 7 3 0 4"]
    assert "14 node(s): 6 FINISHED, 4 FAILED, 4 CANCELLED" in shown
    work = shown.index("work: 4 node(s) did not finish")
    assert shown[work + 1:work + 5] == ["work_X.4 FAILED exit code 1", "work_X.5 FAILED exit code 1",
                                        "work_X.6 FAILED exit code 1", "... and 1 more"]
    post = shown.index("post: 4 node(s) did not finish")
    assert shown[post + 1] == "post_X.4 CANCELLED ancestor work_X.4 failed"
    assert "work_X.1" not in out                      # finished nodes are only counted


def test_summary_limit_defaults_to_ten_and_zero_lists_none(ended):
    default = ok(maestro("status", ended, "--summary")).stdout
    assert "more" not in default and "work_X.7 FAILED exit code 1" in lines(default)
    counts_only = ok(maestro("status", ended, "--summary", "--limit", "0")).stdout
    assert "did not finish" not in counts_only and "work 7 3 4 0" in lines(counts_only)


def test_the_default_table_is_still_maestros(ended):
    out = ok(maestro("status", ended)).stdout
    assert lines(out)[0].startswith("Step Name Job ID Workspace State Run Time Elapsed Time Start Time Submit Time "
                                    "End Time Number Restarts Reason")
    assert len([line for line in lines(out) if line.startswith(("work_X.", "post_X."))]) == 14


# --------------------------------------------------------------------------- filters

def test_state_filter_is_case_insensitive_and_repeatable(ended):
    out = ok(maestro("status", ended, "--state", "failed", "--state", "Cancelled", "--layout", "narrow")).stdout
    names = [line.split()[0] for line in lines(out) if line.startswith(("work_", "post_"))]
    assert names == ["work_X.4", "work_X.5", "work_X.6", "work_X.7", "post_X.4", "post_X.5", "post_X.6", "post_X.7"]
    assert "8 node(s): 4 FAILED, 4 CANCELLED" in lines(out)


def test_step_and_state_filters_with_json(ended):
    document = json.loads(ok(maestro("status", ended, "--json", "--step", "post", "--state", "CANCELLED")).stdout)
    assert [node["name"] for node in document["nodes"]] == ["post_X.4", "post_X.5", "post_X.6", "post_X.7"]
    assert document["counts"] == {"CANCELLED": 4}
    assert document["finished"] is True          # the study's, not the selection's


def test_filters_with_csv_and_with_summary(ended):
    csv_text = ok(maestro("status", ended, "--csv", "-", "--step", "work", "--state", "finished")).stdout
    assert [row.split(",")[0] for row in csv_text.splitlines()] == ["Step Name", "work_X.1", "work_X.2", "work_X.3"]
    out = ok(maestro("status", ended, "--summary", "--step", "work")).stdout
    assert "work 7 3 4" in lines(out) and not any(line.startswith("post") for line in lines(out))


def test_bad_filters_are_usage_errors_naming_what_is_valid(ended):
    result = maestro("status", ended, "--state", "done")
    assert result.returncode == 64
    assert "unknown state 'done': expected one of INITIALIZED, PENDING, RUNNING" in result.stderr
    result = maestro("status", ended, "--step", "wrok")
    assert result.returncode == 64
    assert result.stderr.strip() == "error: no step 'wrok' in this study; its steps: work, post"


@pytest.mark.parametrize("argv", [["--limit", "3"], ["--summary", "--json"], ["--summary", "--csv", "-"],
                                  ["--watch", "--json"], ["--watch", "0.2"]])
def test_options_that_do_not_go_together_are_usage_errors(ended, argv):
    result = maestro("status", ended, *argv)
    assert result.returncode == 64 and "error:" in result.stderr, result.stderr
    assert result.stdout == ""


# --------------------------------------------------------------------------- --watch

def test_watch_of_an_ended_study_prints_once_and_exits(ended):
    result = ok(maestro("status", ended, "--watch", "--summary"))
    assert result.stdout.count("14 node(s):") == 1 and CLEAR_SCREEN not in result.stdout


def test_watch_piped_prints_again_until_the_study_ends(running, tmp_path):
    watch = subprocess.Popen([sys.executable, "-m", "maestro_compile", "status", str(running), "--watch", "1",
                              "--summary"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
    out = ""
    try:
        for line in watch.stdout:                           # two rounds while it runs, then open the gate
            out += line
            if out.count("1 node(s): 1 RUNNING") == 2:
                (tmp_path / "gate").touch()
        err = watch.stderr.read()
        watch.wait(timeout=30)
    finally:
        watch.kill()
    assert watch.returncode == 0, err
    assert out.startswith("Step") and out.count("1 node(s): 1 RUNNING") >= 2
    assert out.rstrip().endswith("1 node(s): 1 FINISHED")
    assert "\n\nStep" in out and CLEAR_SCREEN not in out     # rounds separated by a blank line


def test_watch_on_a_terminal_redraws_in_place_and_ctrl_c_exits_130_quietly(running):
    controller, terminal = pty.openpty()
    watch = subprocess.Popen([sys.executable, "-m", "maestro_compile", "status", str(running), "--watch", "1"],
                             stdout=terminal, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, close_fds=True)
    os.close(terminal)
    seen = ""
    try:
        deadline = time.monotonic() + 30
        while seen.count(CLEAR_SCREEN) < 2 and time.monotonic() < deadline:
            if select.select([controller], [], [], 1)[0]:
                seen += os.read(controller, 65536).decode(errors="replace")
        assert seen.count(CLEAR_SCREEN) >= 2, seen
        assert "Ctrl-C to stop" in seen and "RUNNING" in seen
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=30) == 130
        assert watch.stderr.read() == b""
    finally:
        watch.kill()
        os.close(controller)


# --------------------------------------------------------------------------- submit given a spec

def test_submit_of_a_spec_file_says_to_run_or_compile_it(tmp_path):
    spec = helpers.write_study_spec(tmp_path, "failing", FAILING)
    result = maestro("submit", spec)
    assert result.returncode == 1
    assert "is a study specification, not a study directory" in result.stderr
    assert "maestro run" in result.stderr and "maestro compile" in result.stderr
