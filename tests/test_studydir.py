"""maestro_compile.studydir: every read of a study directory is validated (a damaged file gives
one StudyDirError naming the file and what was expected), and the small writes behave."""
from __future__ import annotations

import copy
import json
from io import StringIO
from pathlib import Path

import pytest

from helpers import wait_until, write_study_spec
from maestro_compile.backends.flux import FluxBackend
from maestro_compile.backends.local import LocalBackend
from maestro_compile.backends.lsf import LsfBackend
from maestro_compile.backends.slurm import SlurmBackend
from maestro_compile.errors import StudyDirError, SubmitError
from maestro_compile.states import LedgerEntry, State, Verdict
from maestro_compile.studydir import StudyDir, parse_ledger, parse_markers, write_manifest

NODE = {"step": "a", "workspace": "a", "params": {}, "depends": [], "script": "a/a.sh", "log": "a/a"}
GOOD = {"format": 1, "name": "demo", "backend": "local",
        "steps": {"a": [], "b": []},
        "nodes": {"a": NODE, "b": {**NODE, "step": "b", "workspace": "b", "depends": ["a"],
                                   "script": "b/b.sh", "log": "b/b"}}}


def manifest_with(**changes):
    data = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is DELETE:
            del data[key]
        else:
            data[key] = value
    return data


def node_with(name="b", **changes):
    data = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is DELETE:
            del data["nodes"][name][key]
        else:
            data["nodes"][name][key] = value
    return data


DELETE = object()


def write_dir(tmp_path: Path, content) -> Path:
    """A study directory whose study.json holds ``content`` (bytes and text as they are, anything
    else as JSON)."""
    directory = tmp_path / "study"
    directory.mkdir()
    if isinstance(content, bytes):
        (directory / "study.json").write_bytes(content)
    else:
        (directory / "study.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return directory


def open_error(tmp_path: Path, content) -> str:
    directory = write_dir(tmp_path, content)
    with pytest.raises(StudyDirError) as info:
        StudyDir.open(directory)
    message = str(info.value)
    assert str(directory / "study.json") in message, message
    return message


def test_the_good_manifest_opens(tmp_path):
    study = StudyDir.open(write_dir(tmp_path, GOOD))
    assert list(study.manifest.nodes) == ["a", "b"]
    assert study.manifest.nodes["b"].depends == ("a",)
    assert study.manifest.backend == "local"


# --- study.json: one StudyDirError naming the file and what was expected ---

@pytest.mark.parametrize("content, expected", [
    ("{not json", "cannot read the study manifest"),
    ("", "cannot read the study manifest"),
    (b"\xff\xfe{}", "cannot read the study manifest"),
    ([], "expected a JSON object, found list"),
    ("null", "expected a JSON object"),
    ("[1, 2]", "expected a JSON object, found list"),
    ({}, "format None, expected 1"),
    (manifest_with(format=2), "format 2, expected 1"),
    (manifest_with(format="1"), "format '1', expected 1"),
    (manifest_with(backend=DELETE), "'backend' is None, expected one of flux, local, lsf, pbs, slurm"),
    (manifest_with(backend="sge"), "'backend' is 'sge', expected one of flux, local, lsf, pbs, slurm"),
    (manifest_with(name=DELETE), "'name' is missing or not a string"),
    (manifest_with(nodes=DELETE), "'nodes' is missing, empty or not an object"),
    (manifest_with(nodes={}), "'nodes' is missing, empty or not an object"),
    (manifest_with(nodes=[NODE]), "'nodes' is missing, empty or not an object"),
    (manifest_with(nodes="a"), "'nodes' is missing, empty or not an object"),
    (manifest_with(nodes={"a": None}), "node 'a': expected an object with step, workspace, params, depends"),
    (node_with(depends=DELETE), "node 'b': expected an object with step, workspace, params, depends"),
    (node_with(log=DELETE), "node 'b': expected an object with step, workspace, params, depends, script, log"),
    (node_with(depends=None), "node 'b': 'depends' must be a list of node names, found None"),
    (node_with(depends="a"), "node 'b': 'depends' must be a list of node names, found 'a'"),
    (node_with(depends=[1]), "node 'b': 'depends' must be a list of node names"),
    (node_with(depends=["zz"]), "node 'b': its parent 'zz' is not an earlier node of the study"),
    (node_with(name="a", depends=["b"]), "node 'a': its parent 'b' is not an earlier node of the study"),
    (node_with(depends=["b"]), "node 'b': its parent 'b' is not an earlier node of the study"),
    (node_with(workspace="../elsewhere"), "node 'b': 'workspace' must be a path inside the study directory, "
                                          "found '../elsewhere'"),
    (node_with(workspace="b/../../x"), "'workspace' must be a path inside the study directory"),
    (node_with(workspace="/etc"), "node 'b': 'workspace' must be a path inside the study directory, found '/etc'"),
    (node_with(workspace=""), "'workspace' must be a path inside the study directory"),
    (node_with(script="/bin/sh"), "'script' must be a path inside the study directory"),
    (node_with(log="../../log"), "'log' must be a path inside the study directory"),
    (node_with(step=7), "node 'b': 'step'"),
    (node_with(params=["X"]), "node 'b': 'params' must be an object"),
])
def test_damaged_manifest_gives_one_clear_error(tmp_path, content, expected):
    message = open_error(tmp_path, content)
    assert expected in message
    assert "Error" not in message and "Traceback" not in message   # no Python exception names


def test_a_damaged_manifest_says_to_compile_again(tmp_path):
    assert "compile the spec again into a new directory" in open_error(tmp_path, node_with(depends=None))


def test_missing_directory(tmp_path):
    with pytest.raises(StudyDirError, match="no such directory") as info:
        StudyDir.open(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_directory_without_manifest(tmp_path):
    with pytest.raises(StudyDirError) as info:
        StudyDir.open(tmp_path)
    assert str(info.value) == (f"{tmp_path} is not a study directory (no study.json); "
                               f"create one with `maestro compile SPEC`")


def test_manifest_that_is_a_directory(tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study.json").mkdir()
    with pytest.raises(StudyDirError, match="cannot read the study manifest"):
        StudyDir.open(tmp_path / "study")


def test_damaged_steps_entry_is_a_study_dir_error(tmp_path):
    from maestro_compile.graph import from_directory
    directory = write_dir(tmp_path, manifest_with(steps={"a": None, "b": []}))
    with pytest.raises(StudyDirError):
        from_directory(directory, with_status=False)


# --- the ledger ---

NODES = {"prep": None, "work_1": None, "work_2": None}


def test_ledger_lines_and_repeated_submissions():
    text = "100\tprep\t11\n101.5\twork_1\t12_0\n102\twork_2\t12_1\n200\twork_1\t13\n300\twork_1\t14\n"
    ledger = parse_ledger(text, "jobs.tsv", NODES, SlurmBackend.job_id)
    assert ledger == {"prep": LedgerEntry(100.0, "11", 1),
                      "work_1": LedgerEntry(300.0, "14", 3),
                      "work_2": LedgerEntry(102.0, "12_1", 1)}


@pytest.mark.parametrize("backend, ident", [(SlurmBackend, "1234_5"), (LsfBackend, "1234[5]"),
                                            (FluxBackend, "123456789012345678"), (LocalBackend, "4321")])
def test_each_scheduler_s_own_ids(backend, ident):
    assert parse_ledger(f"1\tprep\t{ident}\n", "jobs.tsv", NODES, backend.job_id)["prep"].job_id == ident


@pytest.mark.parametrize("backend, ident", [(LsfBackend, "1234_5"), (SlurmBackend, "1234[5]"),
                                            (FluxBackend, "1234_5"), (FluxBackend, "1234[5]")])
def test_another_scheduler_s_ids_are_refused(backend, ident):
    with pytest.raises(StudyDirError, match=r"jobs\.tsv:1: .* is not a job id of this study's scheduler"):
        parse_ledger(f"1\tprep\t{ident}\n", "jobs.tsv", NODES, backend.job_id)


def test_garbled_first_line_names_the_file_and_line():
    with pytest.raises(StudyDirError) as info:
        parse_ledger("garbage here\n1\tprep\t5\n", "/s/jobs.tsv", NODES, SlurmBackend.job_id)
    assert str(info.value) == ("/s/jobs.tsv:1: expected '<time>\\t<node>\\t<job id>', found 'garbage here'; "
                               "the ledger is damaged")


@pytest.mark.parametrize("line", ["1\tprep", "1\tprep\t5\t6", "x\tprep\t5", "\tprep\t5", "1\t\t5", ""])
def test_lines_of_the_wrong_shape(line):
    with pytest.raises(StudyDirError, match=r"^jobs\.tsv:2: expected '<time>"):
        parse_ledger(f"1\tprep\t5\n{line}\n", "jobs.tsv", NODES, SlurmBackend.job_id)


@pytest.mark.parametrize("backend", [SlurmBackend, LsfBackend, FluxBackend])
@pytest.mark.parametrize("ident", ["1234abc", "-5", "5 ", "12.3", "0x10", "5\r"])
def test_bad_job_ids(backend, ident):
    with pytest.raises(StudyDirError) as info:
        parse_ledger(f"1\tprep\t{ident}\n", "jobs.tsv", NODES, backend.job_id)
    assert str(info.value) == f"jobs.tsv:1: {ident!r} is not a job id of this study's scheduler"


def test_unknown_node():
    with pytest.raises(StudyDirError) as info:
        parse_ledger("1\tprep\t5\n2\tghost\t6\n", "jobs.tsv", NODES, SlurmBackend.job_id)
    assert str(info.value) == "jobs.tsv:2: node 'ghost' is not a node of this study"


def test_a_very_long_bad_line_is_quoted_short():
    with pytest.raises(StudyDirError) as info:
        parse_ledger("x" * 10000 + "\n", "jobs.tsv", NODES, SlurmBackend.job_id)
    assert len(str(info.value)) < 300


def test_incomplete_last_line_is_left_for_the_next_read():
    text = "1\tprep\t5\n2\twork_1\t6"   # the second line is being written
    assert parse_ledger(text, "jobs.tsv", NODES, SlurmBackend.job_id) == {"prep": LedgerEntry(1.0, "5", 1)}
    assert parse_ledger("2\twork_1\t6", "jobs.tsv", NODES, SlurmBackend.job_id) == {}
    assert parse_ledger("garb", "jobs.tsv", NODES, SlurmBackend.job_id) == {}   # not judged yet


def test_empty_ledger():
    assert parse_ledger("", "jobs.tsv", NODES, SlurmBackend.job_id) == {}


# --- markers ---

def test_markers_later_lines_win():
    markers = parse_markers("START=10\nHOST=a\nJOB_ID=7\nHOST=b\nEND=20\nEXIT_CODE=0\n")
    assert markers["HOST"] == "b" and markers.get("END") == "20" and markers.starts == 1
    assert "EXIT_CODE" in markers and "SIGNAL" not in markers
    assert markers.get("SIGNAL", "none") == "none"


def test_a_start_begins_an_attempt_and_clears_what_the_previous_one_ended_with():
    markers = parse_markers("START=10\nEND=20\nEXIT_CODE=1\nSIGNAL=TERM\nREQUEUE=19\nSTART=30\nHOST=x\n")
    assert markers.starts == 2
    assert markers["START"] == "30"
    for stale in ("END", "EXIT_CODE", "SIGNAL", "REQUEUE"):
        assert stale not in markers
    assert markers.outcome() == Verdict(State.RUNNING)


def test_restart_lines_count_as_attempts():
    markers = parse_markers("START=1\nRESTART=1\nRESTART=2\nTIMEOUT=9\nEND=9\nEXIT_CODE=124\n")
    assert markers.starts == 3
    assert markers.outcome() == Verdict(State.TIMEDOUT, "timed out after 2 restart(s)")


def test_lines_without_equals_are_ignored():
    markers = parse_markers("START=1\ngarbage\n\nEXIT_CODE\nEND=2\nEXIT_CODE=0\nKEY=a=b\n")
    assert dict(markers.values) == {"START": "1", "END": "2", "EXIT_CODE": "0", "KEY": "a=b"}
    assert markers.starts == 1


@pytest.mark.parametrize("text, verdict", [
    ("START=1\nEND=2\nEXIT_CODE=0\n", Verdict(State.FINISHED)),
    ("START=1\nEND=2\nEXIT_CODE=3\n", Verdict(State.FAILED, "exit code 3")),
    ("START=1\nEND=2\nEXIT_CODE=124\nTIMEOUT=2\n", Verdict(State.TIMEDOUT, "timed out after 0 restart(s)")),
    ("START=1\nHOST=h\n", Verdict(State.RUNNING)),
    ("", None),
    ("HOST=h\n", None),
])
def test_outcome_from_markers_alone(text, verdict):
    assert parse_markers(text).outcome() == verdict


# --- write_manifest ---

def test_write_manifest_parses_back_with_one_line_per_node():
    nodes = {f"n{i}": {**NODE, "workspace": f"n{i}"} for i in range(5)}
    out = StringIO()
    write_manifest(out, {"format": 1, "name": "demo", "steps": {"a": ["X"]},
                         "nodes": lambda: iter(nodes.items()),
                         "jobs": [{"step": "a", "tasks": 5}, {"step": "b", "tasks": 1}],
                         "empty": {}, "none": []})
    text = out.getvalue()
    data = json.loads(text)
    assert data == {"format": 1, "name": "demo", "steps": {"a": ["X"]}, "nodes": nodes,
                    "jobs": [{"step": "a", "tasks": 5}, {"step": "b", "tasks": 1}], "empty": {}, "none": []}
    lines = text.splitlines()
    for name, entry in nodes.items():
        assert sum(1 for line in lines if line.strip().startswith(json.dumps(name) + ":")) == 1
        assert [line for line in lines if json.dumps(name) + ":" in line][0].rstrip(",").strip() == \
            f"{json.dumps(name)}: {json.dumps(entry)}"
    assert sum(1 for line in lines if '"tasks"' in line) == 2


def test_write_manifest_with_no_nodes_is_still_json():
    out = StringIO()
    write_manifest(out, {"nodes": lambda: iter(())})
    assert json.loads(out.getvalue()) == {"nodes": {}}


# --- a compiled study ---

SPEC = """\
    study:
      - name: prep
        description: the root
        run:
          cmd: echo prep
      - name: work
        description: one per X
        run:
          cmd: echo $(X)
          depends: [prep]
    global.parameters:
      X:
        values: [1, 2]
        label: X.%%
    """


@pytest.fixture
def compiled(tmp_path) -> Path:
    from maestro_compile.cli import main
    spec = write_study_spec(tmp_path, "rt", SPEC)
    out = tmp_path / "out"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    return out


def test_round_trip_of_a_compiled_study(compiled):
    study = StudyDir.open(compiled)
    manifest = study.manifest
    assert manifest.name == "rt" and manifest.backend == "local"
    assert list(manifest.nodes) == ["prep", "work_X.1", "work_X.2"]
    assert {step: list(keys) for step, keys in manifest.steps.items()} == {"prep": [], "work": ["X"]}
    work = manifest.nodes["work_X.2"]
    assert (work.step, work.workspace, dict(work.params), work.depends) == ("work", "work/X.2", {"X": "2"}, ("prep",))
    assert study.file(work.script).is_file()
    assert study.marker_path(work) == str(compiled / "work" / "X.2" / "work_X.2.status")
    assert study.ledger_size() == 0 and study.ledger(LocalBackend.job_id) == {}
    assert study.submission_lock() is None
    assert not study.is_cancelled() and not study.cancelled_before()
    assert study.runner_pid() is None and study.runner_done() is None and study.runner_nodes() is None
    assert not study.has_markers(work)
    assert study.markers(work).values == {} and study.markers(work).starts == 0


def test_ledger_and_markers_of_a_compiled_study(compiled):
    study = StudyDir.open(compiled)
    study.ledger_path.write_text("5\tprep\t100\n6\twork_X.1\t101\n7\tprep\t102\n8\twork_X.2")
    assert study.ledger(LocalBackend.job_id) == {"prep": LedgerEntry(7.0, "102", 2),
                                                 "work_X.1": LedgerEntry(6.0, "101", 1)}
    assert study.ledger_size() == len(study.ledger_path.read_bytes())
    study.ledger_path.write_text("5\tprep\t100\n6\tnobody\t101\n")
    with pytest.raises(StudyDirError, match=rf"^{str(study.ledger_path)}:2: node 'nobody'"):
        study.ledger(LocalBackend.job_id)
    info = study.manifest.nodes["prep"]
    Path(study.marker_path(info)).write_text("START=1\nEND=2\nEXIT_CODE=0\n")
    assert study.has_markers(info) and study.markers(info).outcome() == Verdict(State.FINISHED)


def test_cancel_record(compiled):
    study = StudyDir.open(compiled)
    assert not study.is_cancelled()
    study.mark_cancelled(1234)
    assert study.is_cancelled()
    assert (compiled / ".maestro" / "cancelled").read_text() == "1234\n"


def test_next_resubmit_script_follows_the_highest_kept_one(compiled):
    study = StudyDir.open(compiled)
    assert study.next_resubmit_script() == (1, compiled / ".maestro" / "resubmit-1.sh")
    study.state_dir.mkdir()
    for name in ("resubmit-1.sh", "resubmit-3.sh", "resubmit-x.sh", "resubmit-7.log"):
        (study.state_dir / name).write_text("")
    assert study.next_resubmit_script() == (4, compiled / ".maestro" / "resubmit-4.sh")


def test_write_new_creates_an_executable_script_and_never_overwrites(compiled):
    study = StudyDir.open(compiled)
    study.state_dir.mkdir()
    number, path = study.next_resubmit_script()
    StudyDir.write_new(path, "echo one\n")
    assert path.read_text() == "echo one\n"
    assert path.stat().st_mode & 0o111
    with pytest.raises(SubmitError, match="appeared meanwhile: another resubmission is running"):
        StudyDir.write_new(path, "echo two\n")
    assert path.read_text() == "echo one\n"
    assert study.next_resubmit_script()[0] == number + 1


def test_write_new_in_a_missing_directory_is_a_submit_error(tmp_path):
    with pytest.raises(SubmitError, match="cannot write"):
        StudyDir.write_new(tmp_path / "missing" / "resubmit-1.sh", "x")


def test_runner_files(compiled):
    study = StudyDir.open(compiled)
    study.state_dir.mkdir()
    (study.state_dir / "submitted").write_text("1700000000 42\n")
    (study.state_dir / "runner.pid").write_text("42\n")
    (study.state_dir / "runner.done").write_text("1700000100 ok\n")
    (study.state_dir / "runner.nodes").write_text("work_X.1\n\nwork_X.2\n")
    (study.state_dir / "cancelled.before-resubmit-1").write_text("1\n")
    assert study.submission_lock() == "1700000000 42"
    assert study.runner_pid() == 42
    assert study.runner_done() == "1700000100 ok"
    assert study.runner_nodes() == frozenset({"work_X.1", "work_X.2"})
    assert study.cancelled_before() and not study.is_cancelled()
    (study.state_dir / "runner.pid").write_text("not a pid\n")
    assert study.runner_pid() is None


# --- the submission's marks ---

def _boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_submission_marks_and_their_owner(tmp_path):
    import socket
    import subprocess
    from maestro_compile.studydir import Submission
    script = tmp_path / "submit.sh"
    script.write_text("sleep 30\n")
    owner = subprocess.Popen(["bash", str(script)])
    try:
        # Popen returns after the fork: the child is bash running submit.sh only once it has exec'd
        wait_until(lambda: b"submit.sh" in Path(f"/proc/{owner.pid}/cmdline").read_bytes(), "bash submit.sh", 10,
                   interval=0.01)
        here, boot = socket.gethostname(), _boot()
        running = Submission(f"100 {owner.pid} {here} {boot}", queued=False, released=False, unconfirmed=None)
        assert running.locked and running.owner_alive() and not running.interrupted
        assert running.time == 100.0 and running.pid == owner.pid and running.host == here
        assert Submission(f"100 {owner.pid} {here} other-boot", False, False, None).interrupted   # rebooted since
        assert not Submission(f"100 {owner.pid} elsewhere {boot}", False, False, None).interrupted  # cannot tell
        other = subprocess.Popen(["sleep", "30"])        # alive, but not a submit script
        try:
            assert Submission(f"100 {other.pid} {here} {boot}", False, False, None).interrupted
        finally:
            other.kill()
            other.wait()
    finally:
        owner.kill()
        owner.wait()
    gone = Submission(f"100 {owner.pid} {socket.gethostname()} {_boot()}", False, False, "12 13")
    assert gone.interrupted and gone.unconfirmed == ["12", "13"]
    assert not Submission(f"100 {owner.pid} h {_boot()}", True, True, None).interrupted   # complete
    legacy = Submission("100 4242 oldhost", False, False, None)        # written by an older submit.sh
    assert legacy.queued and legacy.released and not legacy.interrupted
    nothing = Submission(None, False, False, None)
    assert not nothing.locked and not nothing.interrupted
