"""maestro_compile.plan: which nodes become job arrays and what each job waits for, from the
backend's capabilities; the cluster's facts are resolved before rendering, which stays pure."""
from __future__ import annotations

import datetime
import os
import json
from pathlib import Path

import pytest

from helpers import write_study_spec
from maestro_compile.backends.flux import FluxBackend
from maestro_compile.backends.lsf import LsfBackend
from maestro_compile.backends.slurm import DEFAULT_MAX_ARRAY, SlurmBackend
from maestro_compile.pipeline import Options, build_study, cluster_max_array_size, compile_study, plan_study
from maestro_compile.plan import Capabilities, Dependency, Plan, plan_jobs

CHAIN = """\
    batch:
      type: slurm
      queue: pdebug
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
      - name: post
        description: one per work node
        run:
          cmd: echo post $(X)
          depends: [work]
      - name: report
        description: the funnel
        run:
          cmd: echo report
          depends: [post_*]
    global.parameters:
      X:
        values: [1, 2, 3, 4, 5]
        label: X.%%
    """
HEADERS = """\
    batch:
      type: slurm
    study:
      - name: sim
        description: its node count is a parameter
        run:
          cmd: echo $(N)
          nodes: $(N)
      - name: same
        description: one node each
        run:
          cmd: echo $(N)
          nodes: 1
      - name: constrained
        description: a directive of its own, per parameter
        run:
          cmd: |
            #SBATCH --constraint=c$(N)
            echo $(N)
    global.parameters:
      N:
        values: [1, 2, 3]
        label: N.%%
    """


def study_of(tmp_path: Path, body: str, name: str = "plan", **options):
    spec = write_study_spec(tmp_path, name, body)
    return build_study(Options(spec_path=spec, out_dir=tmp_path / "out", **options))


def plan_of(study, backend, capabilities: Capabilities, max_array_size: int) -> Plan:
    return plan_jobs(study.nodes, capabilities, max_array_size, lambda node: backend.array_key(study, node))


def shape(plan: Plan):
    """(step, node names, array, chunk, depends) of every job."""
    return [(job.step, [n.name for n in job.nodes], job.array, job.chunk, job.depends) for job in plan.jobs]


def ok(job, task=None):
    return Dependency(job, "afterok", task)


def corr(job):
    return Dependency(job, "aftercorr")


WORK = [f"work_X.{i}" for i in range(1, 6)]
POST = [f"post_X.{i}" for i in range(1, 6)]


def test_without_arrays_every_node_is_a_job(tmp_path):
    study = study_of(tmp_path, CHAIN)
    plan = plan_of(study, SlurmBackend(), FluxBackend.capabilities, 1000)
    assert FluxBackend.capabilities.arrays is False
    assert shape(plan) == (
        [("prep", ["prep"], False, 0, ())]
        + [("work", [w], False, 0, (ok(0),)) for w in WORK]
        + [("post", [p], False, 0, (ok(1 + i),)) for i, p in enumerate(POST)]
        + [("report", ["report"], False, 0, tuple(ok(6 + i) for i in range(5)))])
    assert plan.array_count == 0 and plan.largest_array == 0
    assert [job.index for job in plan.jobs] == list(range(12))
    assert [job.root for job in plan.jobs] == [True] + [False] * 11


def test_flux_study_is_planned_without_arrays(tmp_path):
    study = study_of(tmp_path, CHAIN, backend="flux")
    plan = plan_study(study, FluxBackend())
    assert len(plan.jobs) == len(study.nodes) == 12
    assert plan.array_count == 0


def test_arrays_chain_task_to_task_and_funnels_wait_for_the_whole_array(tmp_path):
    study = study_of(tmp_path, CHAIN)
    plan = plan_of(study, SlurmBackend(), SlurmBackend.capabilities, 1000)
    assert shape(plan) == [
        ("prep", ["prep"], False, 0, ()),
        ("work", WORK, True, 0, (ok(0),)),
        ("post", POST, True, 0, (corr(1),)),
        ("report", ["report"], False, 0, (ok(2),)),
    ]
    assert plan.array_count == 2 and plan.largest_array == 5


def test_a_limit_below_two_means_no_arrays(tmp_path):
    study = study_of(tmp_path, CHAIN)
    plan = plan_of(study, SlurmBackend(), SlurmBackend.capabilities, 1)
    assert plan.array_count == 0 and len(plan.jobs) == 12


def test_arrays_split_at_the_size_limit(tmp_path):
    study = study_of(tmp_path, CHAIN)
    plan = plan_of(study, SlurmBackend(), SlurmBackend.capabilities, 2)
    assert shape(plan) == [
        ("prep", ["prep"], False, 0, ()),
        ("work", WORK[0:2], True, 0, (ok(0),)),
        ("work", WORK[2:4], True, 1, (ok(0),)),
        ("work", WORK[4:5], True, 2, (ok(0),)),
        ("post", POST[0:2], True, 0, (corr(1),)),     # each chunk follows its own parent chunk
        ("post", POST[2:4], True, 1, (corr(2),)),
        ("post", POST[4:5], True, 2, (corr(3),)),
        ("report", ["report"], False, 0, (ok(4), ok(5), ok(6))),   # the funnel waits for every chunk
    ]
    assert plan.array_count == 6 and plan.largest_array == 2


def test_a_step_that_waits_for_a_chunked_step_as_a_whole(tmp_path):
    body = CHAIN.replace("depends: [work]", "depends: [work_*]").replace("echo post $(X)", "echo post")
    study = study_of(tmp_path, body)
    plan = plan_of(study, SlurmBackend(), SlurmBackend.capabilities, 2)
    post = [job for job in plan.jobs if job.step == "post"]
    assert [(len(job.nodes), job.depends) for job in post] == [(1, (ok(1), ok(2), ok(3)))]


def test_nodes_whose_headers_differ_are_single_jobs(tmp_path):
    study = study_of(tmp_path, HEADERS)
    plan = plan_of(study, SlurmBackend(), SlurmBackend.capabilities, 1000)
    assert shape(plan) == (
        [("sim", [f"sim_N.{i}"], False, 0, ()) for i in (1, 2, 3)]
        + [("same", ["same_N.1", "same_N.2", "same_N.3"], True, 0, ())]
        + [("constrained", [f"constrained_N.{i}"], False, 0, ()) for i in (1, 2, 3)])
    assert plan.array_count == 1 and plan.largest_array == 3


def test_equal_user_directives_still_make_an_array(tmp_path):
    study = study_of(tmp_path, HEADERS.replace("--constraint=c$(N)", "--constraint=gpu"))
    plan = plan_of(study, SlurmBackend(), SlurmBackend.capabilities, 1000)
    assert [len(job.nodes) for job in plan.jobs if job.step == "constrained"] == [3]


MIXED = """\
    batch:
      type: slurm
    study:
      - name: sim
        description: s
        run:
          cmd: echo $(X)
      - name: agg
        description: a
        run:
          cmd: echo agg
          depends: [sim_*]
      - name: mixed
        description: task i of sim, and all of agg
        run:
          cmd: echo $(X)
          depends: [sim, agg]
    global.parameters:
      X:
        values: [1, 2, 3]
        label: X.%%
    """


def test_an_array_can_wait_task_to_task_and_for_a_whole_job(tmp_path):
    study = study_of(tmp_path, MIXED)
    plan = plan_of(study, SlurmBackend(), SlurmBackend.capabilities, 1000)
    assert shape(plan) == [
        ("sim", ["sim_X.1", "sim_X.2", "sim_X.3"], True, 0, ()),
        ("agg", ["agg"], False, 0, (ok(0),)),
        ("mixed", ["mixed_X.1", "mixed_X.2", "mixed_X.3"], True, 0, (corr(0), ok(1))),
    ]


# --- cluster facts are resolved before rendering; rendering is pure ---

def test_render_is_pure(tmp_path):
    spec = write_study_spec(tmp_path, "pure", CHAIN)
    now = datetime.datetime(2024, 5, 6, 7, 8, 9)
    texts = []
    for name in ("first", "second-with-a-longer-name"):
        out = tmp_path / name
        result = compile_study(Options(spec_path=spec, out_dir=out, max_array_size=1000), now=now)
        identity = result.study.identity     # random per compile (the jobs' tag): an input, like the time
        assert identity and identity in (out / "study.json").read_text()
        files = {str(path.relative_to(out)): (path.read_text().replace(str(out), "<STUDY>").replace(identity, "<ID>"),
                                              path.stat().st_mode)
                 for path in sorted(out.rglob("*")) if path.is_file()}
        texts.append(files)
    assert texts[0] == texts[1]
    assert "submit.sh" in texts[0] and "study.json" in texts[0]
    assert len(texts[0]) >= 1 + 2 + 12   # the spec, submit.sh and study.json, a script per node


@pytest.fixture
def fake_scontrol(tmp_path, monkeypatch):
    """An scontrol on PATH that answers `show config` with MaxArraySize = 2 and leaves a mark
    each time it runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    called = tmp_path / "scontrol-called"
    script = bin_dir / "scontrol"
    script.write_text(f"#!/bin/sh\necho \"$*\" >> '{called}'\n"
                      "if [ \"$1 $2\" = 'show config' ]; then\n"
                      "  echo 'Configuration data as of 2024-01-01T00:00:00'\n"
                      "  echo 'MaxArraySize            = 2'\n"
                      "  echo 'MaxJobCount             = 10000'\n"
                      "fi\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return called


def test_the_cluster_s_array_limit_is_asked_once_before_rendering(tmp_path, fake_scontrol):
    assert cluster_max_array_size(SlurmBackend()) == 2
    assert fake_scontrol.read_text() == "show config\n"
    fake_scontrol.unlink()
    spec = write_study_spec(tmp_path, "facts", CHAIN)
    out = tmp_path / "out"
    compile_study(Options(spec_path=spec, out_dir=out))
    assert fake_scontrol.read_text() == "show config\n"    # once for the whole compile
    manifest = json.loads((out / "study.json").read_text())
    arrays = [job for job in manifest["jobs"] if job["array"]]
    assert [(job["step"], job["tasks"]) for job in arrays] == [("work", 2), ("work", 2), ("work", 1),
                                                              ("post", 2), ("post", 2), ("post", 1)]
    submit = (out / "submit.sh").read_text()
    assert "--array=0-1" in submit and "--array=0-4" not in submit


def test_an_explicit_limit_never_asks_the_cluster(tmp_path, fake_scontrol):
    spec = write_study_spec(tmp_path, "given", CHAIN)
    out = tmp_path / "out"
    compile_study(Options(spec_path=spec, out_dir=out, max_array_size=1000))
    assert not fake_scontrol.exists()
    manifest = json.loads((out / "study.json").read_text())
    assert [(job["step"], job["tasks"]) for job in manifest["jobs"] if job["array"]] == [("work", 5), ("post", 5)]
    assert "--array=0-4" in (out / "submit.sh").read_text()


def test_an_scontrol_that_fails_or_says_nothing_gives_the_default(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for text in ("#!/bin/sh\necho 'slurm_load_ctl_conf error' >&2\nexit 1\n", "#!/bin/sh\necho 'Other = 1'\n"):
        script.write_text(text)
        script.chmod(0o755)
        assert cluster_max_array_size(SlurmBackend()) == DEFAULT_MAX_ARRAY


def test_backends_without_a_facts_command_use_their_default(tmp_path, fake_scontrol):
    assert cluster_max_array_size(LsfBackend()) == LsfBackend.capabilities.max_array_size == 1000
    assert not fake_scontrol.exists()
    study = study_of(tmp_path, CHAIN, backend="flux")
    plan_study(study, FluxBackend())
    assert not fake_scontrol.exists()
