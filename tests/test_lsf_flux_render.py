"""LSF and Flux backend pieces that need no scheduler: directives, launchers, submit.sh lines,
walltime and priority conversion, job id decoding and the parsers of bjobs/bhist/flux jobs output."""
import json
import re
import subprocess
import textwrap

import pytest

from maestro_compile.backends.flux import FluxBackend, parse_jobs_json
from maestro_compile.backends.lsf import LsfBackend, parse_bhist, parse_bjobs_json
from maestro_compile.cli import main
from maestro_compile.pipeline import Options, build_study
from maestro_compile.states import NativeStatus
from helpers import study_files, study_manifest_extra

F58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _study(tmp_path, body, backend, **options):
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(body))
    return build_study(Options(spec_path=spec, out_dir=tmp_path / "study", backend=backend, **options))


def _header(text, prefix):
    return [line[len(prefix) + 1:] for line in text.splitlines() if line.startswith(prefix + " ")]


HPC = """\
    description: {name: s, description: d}
    batch: {type: lsf, queue: pbatch, bank: "my \\"bank\\"\\nX", reservation: res1}
    study:
      - name: sim
        description: simulate
        run:
          cmd: |
            #BSUB -R "span[hosts=1]"
            # flux: --setattr=user.tag=x
            $(LAUNCHER) ./app $(X)
            $(LAUNCHER)[1n, 2p] ./small
          nodes: 2
          procs: 8
          cores per task: 2
          gpus: 2
          tasks per rs: 4
          rs per node: 2
          cpus per rs: 3
          walltime: "01:30:30"
          restart: echo again
          exclusive: true
      - name: post
        description: post-process
        run:
          cmd: echo post
          depends: [sim]
          walltime: 90
    global.parameters:
      X: {values: [1, 2, 3], label: "X.%%"}
    """


# --------------------------------------------------------------------------- LSF

def test_lsf_header_rounds_walltime_up_and_keeps_values_on_one_line(tmp_path):
    study = _study(tmp_path, HPC, "lsf")
    sim = next(n for n in study.nodes if n.step == "sim")
    header = _header(LsfBackend().render_step(study, sim), "#BSUB")
    assert header[:4] == ['-J "sim_X.1"', f'-Jd "maestro_compile:{study.identity}"', "-o sim_X.1.out",
                          "-e sim_X.1.err"]
    assert "-nnodes 2" in header and "-n 8" not in header
    assert '-q "pbatch"' in header and '-U "res1"' in header and "-x" in header
    assert '-G "my \\"bank\\" X"' in header            # quote escaped, newline folded
    assert "-W 01:31" in header                         # 01:30:30 rounded up (Maestro: HH:MM)
    assert "-wa USR1" in header and "-wt 5" in header   # restart: warning ahead of the run limit
    assert header[-1] == '-R "span[hosts=1]"'           # moved from cmd into the header
    post = next(n for n in study.nodes if n.step == "post")
    assert "-W 01:30" in _header(LsfBackend().render_step(study, post), "#BSUB")  # int = minutes, no crash


def test_lsf_jsrun_and_lrun_launchers(tmp_path):
    study = _study(tmp_path, HPC, "lsf")
    sim = next(n for n in study.nodes if n.step == "sim")
    text = LsfBackend().render_step(study, sim)
    assert "jsrun --nrs 8 -b rs -g 2 -a 4 -r 2 -c 3 ./app" in text
    assert "jsrun --nrs 2 -b rs -g 2 -a 4 -r 2 -c 3 ./small" in text
    study = _study(tmp_path, HPC.replace("reservation: res1}", "reservation: res1, launcher: lrun}"), "lsf")
    sim = next(n for n in study.nodes if n.step == "sim")
    text = LsfBackend().render_step(study, sim)
    assert "lrun -N 2 -n 8 ./app" in text and "lrun -N 1 -n 2 ./small" in text


def test_lsf_submit_chains_arrays_element_wise_and_funnels_on_whole_arrays(tmp_path):
    body = HPC.replace("    global.parameters:", textwrap.indent(textwrap.dedent("""\
      - name: summary
        description: the funnel
        run: {cmd: echo all, depends: [post_*]}
    global.parameters:"""), "    "))
    study = _study(tmp_path, body, "lsf", throttle=2)
    files = study_files(LsfBackend(), study)
    submit = files["submit.sh"].text
    lines = [line for line in submit.splitlines() if line.startswith("submit ")]
    assert len(lines) == 3
    assert re.search(r"^submit J0 sim -H -cwd \S+/sim < \S+/sim/sim\.array\.lsf\.sh$", lines[0])
    assert '-w "done(${J0}[*])" -ti' in lines[1]     # element i of post waits for element i of sim
    assert '-w "done(${J1})" -ti' in lines[2]        # the funnel waits for the whole array
    assert 'bresume "${ROOTS[@]}"' in submit
    assert "printf -v line '%s\\t%s\\t%s[%s]\\n'" in submit and 'local id=$1 task=1 node line lines=""' in submit  # 1-based
    array = files["sim/sim.array.lsf.sh"].text
    assert '#BSUB -J "sim[1-3]%2"' in array
    assert "task=$(( index - 1 ))" in array


def test_lsf_walltime_that_is_not_a_duration_names_file_line_and_key(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("description: {name: n, description: d}\nbatch: {type: lsf}\nstudy:\n"
                    "  - name: a\n    description: d\n    run:\n      cmd: echo\n      walltime: soon\n")
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:8: study[0].run.walltime: node 'a': cannot read 'soon' as a walltime" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_unknown_lsf_launcher_is_an_error(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("description: {name: n, description: d}\nbatch:\n  type: lsf\n  launcher: mpirun\n"
                    "study: [{name: a, description: d, run: {cmd: echo}}]\n")
    assert main(["validate", str(spec)]) == 1
    assert f"{spec}:4: batch.launcher: expected jsrun or lrun" in capsys.readouterr().err


def test_parse_bjobs_json_and_bhist():
    text = json.dumps({"COMMAND": "bjobs", "JOBS": 4, "RECORDS": [
        {"JOBID": "101", "JOBINDEX": "0", "STAT": "DONE", "EXIT_CODE": "", "EXIT_REASON": "", "PEND_REASON": ""},
        {"JOBID": "102", "JOBINDEX": "1", "STAT": "EXIT", "EXIT_CODE": "3", "EXIT_REASON": "", "PEND_REASON": ""},
        {"JOBID": "102", "JOBINDEX": "2", "STAT": "PSUSP", "EXIT_CODE": "", "EXIT_REASON": "", "PEND_REASON": ""},
        {"JOBID": "999", "ERROR": "Job <999> is not found"}]})
    table = parse_bjobs_json(text)
    assert table == {"101": ("DONE", "", ""), "102[1]": ("EXIT", "", "3"), "102[2]": ("PSUSP", "", "")}
    backend = LsfBackend()
    assert [backend.native_state(table[i]) for i in ("101", "102[1]", "102[2]")] == ["FINISHED", "FAILED", "PENDING"]
    assert backend.is_held(table["102[2]"])
    assert backend.native_state(NativeStatus("EXIT", "TERM_RUNLIMIT: job killed after reaching LSF run time limit", "")) == \
        "TIMEDOUT"
    assert backend.native_state(NativeStatus("EXIT", "TERM_OWNER: job killed by owner", "")) == "CANCELLED"
    assert backend.blocked_by_parent(NativeStatus("EXIT", "TERM_ORPHAN_SYSTEM: orphan job", ""))
    history = textwrap.dedent("""\
        Job <7>, User <u>, Project <default>, Command <#!/bin/bash>
        Mon Nov 21 10:00:00: Submitted from host <h>, to Queue <normal>, CWD <$HOME>;
        Mon Nov 21 10:00:01: Dispatched to <h>, Effective RES_REQ <select[type == any] >;
        Mon Nov 21 10:00:01: Starting (Pid 1234);
        Mon Nov 21 10:00:05: Exited with exit code 2. The CPU time used is 0.1 seconds;

        Job <8[2]>, User <u>, Project <default>, Command <#!/bin/bash>
        Mon Nov 21 10:00:05: Done successfully. The CPU time used is 0.1 seconds;
        """)
    assert parse_bhist(history) == {"7": ("EXIT", "", "2"), "8[2]": ("DONE", "", "0")}


# --------------------------------------------------------------------------- Flux

def test_flux_directives_batch_and_submit_modes(tmp_path):
    study = _study(tmp_path, HPC.replace("type: lsf", "type: flux"), "flux")
    backend = FluxBackend()
    sim = next(n for n in study.nodes if n.step == "sim")
    header = _header(backend.render_step(study, sim), "# flux:")
    assert header[:3] == ["--job-name=sim_X.1", "--output=sim_X.1.out", "--error=sim_X.1.err"]
    assert {"-N 2", "-n 8", "-c 2", "-g 1", "-x", "-q pbatch", "--bank='my \"bank\" X'"} <= set(header)
    # restarts run inside the job: room for the first attempt and one restart
    assert "-t 10920s" in header and header[-1] == "--setattr=user.tag=x"
    post = next(n for n in study.nodes if n.step == "post")
    assert backend.mode(sim) == "batch" and backend.mode(post) == "submit"
    plan = [json.loads(line) for line in study_files(backend, study)["flux-plan.jsonl"].text.splitlines()]
    post_job = plan[3]
    # flux submit does not read directives: they are on its command line
    assert post_job["node"] == "post_X.1" and post_job["flux"][:5] == \
        ["submit", "--job-name=post_X.1", "--output=post_X.1.out", "--error=post_X.1.err", "-n"]
    words = post_job["flux"]
    assert words[words.index("-t") + 1] == "5400s" and post_job["after"] == [0] and post_job["release"] is None
    assert words[-2:] == [f"--cwd={study.directory / 'post' / 'X.1'}", str(study.directory / post_job_script(study))]
    sim_job = plan[0]
    assert sim_job["flux"][0] == "batch" and sim_job["after"] == [] and sim_job["release"] == "default"
    assert not any(word.startswith("--job-name") for word in sim_job["flux"])   # flux batch reads the script


def post_job_script(study):
    return next(n for n in study.nodes if n.name == "post_X.1").script


def test_flux_bank_only_when_set_and_walltime_hh_mm(tmp_path):
    study = _study(tmp_path, """\
        description: {name: s, description: d}
        batch: {type: flux}
        study:
          - name: a
            description: d
            run: {cmd: echo, procs: 2, walltime: "00:60"}
        """, "flux")
    header = _header(FluxBackend().render_step(study, study.nodes[0]), "# flux:")
    assert not any(line.startswith("--bank") for line in header)     # Maestro writes "--bank="
    assert "-t 3600s" in header                                      # HH:MM, not Maestro's MM:SS


@pytest.mark.parametrize("priority,release", [("low", "8"), ("expedited", "31"), ("High", "24"),
                                              (0.5, "16"), ("held", None)])
def test_flux_priority_becomes_the_urgency_a_root_is_released_to(tmp_path, priority, release):
    study = _study(tmp_path, f"""\
        description: {{name: s, description: d}}
        batch: {{type: flux, uri: "local:///run/flux/local"}}
        study:
          - name: a
            description: d
            run: {{cmd: echo, priority: {json.dumps(priority)}}}
        """, "flux")
    files, manifest = study_files(FluxBackend(), study), study_manifest_extra(FluxBackend(), study)
    submit = files["submit.sh"].text
    assert "export FLUX_URI=local:///run/flux/local" in submit and manifest["flux_uri"] == "local:///run/flux/local"
    (job,) = [json.loads(line) for line in files["flux-plan.jsonl"].text.splitlines()]
    assert job["release"] == release     # None: stays held


def _funnel_plan(tmp_path, points, max_dependencies, priority="medium"):
    study = _study(tmp_path, f"""\
        description: {{name: s, description: d}}
        batch: {{type: flux, queue: pdebug, max_dependencies: {max_dependencies}}}
        study:
          - name: a
            description: d
            run: {{cmd: echo $(X)}}
          - name: z
            description: the funnel
            run: {{cmd: echo, depends: [a_*], priority: {priority}}}
        global.parameters:
          X: {{values: {list(range(points))}, label: X.%%}}
        """, "flux")
    text = study_files(FluxBackend(), study)["flux-plan.jsonl"].text
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("points,limit,levels", [(4, 4, 0), (5, 4, 1), (10, 3, 2), (30, 5, 2), (9, 2, 3)])
def test_a_job_never_gets_more_dependencies_than_max_dependencies(tmp_path, points, limit, levels):
    plan = _funnel_plan(tmp_path, points, limit)
    by_number = {job["job"]: job for job in plan}
    assert len(by_number) == len(plan)
    assert all(len(job["after"]) <= limit for job in plan)
    seen = set()
    for job in plan:        # parents first, as the submitter needs
        assert all(parent in seen for parent in job["after"])
        seen.add(job["job"])

    def parents(number):   # the nodes a job waits for, through its gather jobs
        for parent in by_number[number]["after"]:
            yield from (parents(parent) if by_number[parent].get("gather") else [by_number[parent]["node"]])
    funnel = plan[-1]
    assert funnel["node"] == "z" and sorted(parents(funnel["job"])) == sorted(f"a_X.{x}" for x in range(points))
    gathers = [job for job in plan if job.get("gather")]
    assert {job["gather"] for job in gathers} <= {"z"}
    assert len({job["node"].split(".")[0] for job in gathers}) == levels
    for job in gathers:
        assert job["flux"][-1] == "true" and "--queue=pdebug" in job["flux"]
        assert job["flux"][-2].endswith("/.maestro") and job["release"] is None


@pytest.mark.parametrize("priority,urgency", [("held", None), ("high", 24), ("medium", 16)])
def test_gather_jobs_take_the_urgency_of_their_job_but_are_never_held(tmp_path, priority, urgency):
    plan = _funnel_plan(tmp_path, 6, 3, priority)
    gathers = [job for job in plan if job.get("gather")]
    assert len(gathers) == 2 and {job["urgency"] for job in gathers} == {urgency}
    assert plan[-1]["urgency"] == (0 if priority == "held" else urgency)


@pytest.mark.parametrize("value", ["many", 1, True, -3])
def test_max_dependencies_must_be_a_whole_number_of_at_least_two(tmp_path, capsys, value):
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        description: {{name: s, description: d}}
        batch:
          type: flux
          max_dependencies: {json.dumps(value)}
        study:
          - name: a
            description: d
            run: {{cmd: echo}}
        """))
    assert main(["validate", str(spec)]) != 0
    err = capsys.readouterr().err
    assert "spec.yaml:4" in err and "batch.max_dependencies" in err and "at least 2" in err, err


def _f58(number):
    digits = ""
    while number:
        number, rest = divmod(number, 58)
        digits = F58[rest] + digits
    return "ƒ" + (digits or "1")


# 25501368320 is ƒfrUBM9: an id whose first base58 digit is "f" (a real instance hands such ids
# out 1.49-1.53 s after it starts); tests/test_flux_e2e.py decodes ids from that window
@pytest.mark.parametrize("number", [1, 38, 57, 58, 123456789, 25501368320, 25518145536, 2 ** 62 + 12345])
def test_submit_sh_decodes_every_flux_id_encoding(tmp_path, number):
    study = _study(tmp_path, "description: {name: s, description: d}\nstudy:\n"
                   "  - {name: a, description: d, run: {cmd: echo}}\n", "flux")
    submit = study_files(FluxBackend(), study)["submit.sh"].text
    function = re.search(r"^flux_id_to_dec\(\) \{.*?^\}$", submit, re.S | re.M).group(0)
    for text in (_f58(number), "f" + _f58(number)[1:], str(number), hex(number)):
        out = subprocess.run(["bash", "-c", function + '\nflux_id_to_dec "$1"', "x", text],
                             capture_output=True, text=True)
        assert (out.returncode, out.stdout) == (0, str(number)), text
    assert subprocess.run(["bash", "-c", function + '\nflux_id_to_dec "$1"', "x", "ƒ0Il"]).returncode != 0


def test_parse_flux_jobs_json():
    text = json.dumps({"jobs": [
        {"id": 11, "status": "COMPLETED", "result": "COMPLETED", "returncode": 0, "urgency": 16},
        {"id": 12, "status": "FAILED", "returncode": 1, "exception": {"occurred": False}},
        {"id": 13, "status": "FAILED", "exception": {"occurred": True, "type": "dependency", "severity": 0,
                                                      "note": "dependency afterok:ƒ2 can never be satisfied"}},
        {"id": 14, "status": "PRIORITY", "urgency": 0},
        {"id": 15, "status": "TIMEOUT", "exception": {"occurred": True, "type": "timeout", "note": "limit"}}]})
    table = parse_jobs_json(text)
    backend = FluxBackend()
    assert [backend.native_state(table[str(i)]) for i in range(11, 16)] == \
        ["FINISHED", "FAILED", "CANCELLED", "PENDING", "TIMEDOUT"]
    assert backend.blocked_by_parent(table["13"]) and backend.is_held(table["14"])
    assert parse_jobs_json(json.dumps({"id": 21, "status": "RUN"})) == {"21": ("RUN", "", "")}
