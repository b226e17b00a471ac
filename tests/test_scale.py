"""What makes big sweeps workable: the sharded workspace layout, linear planning, parallel
writing that produces the same study as serial writing, and study.json one line per node."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maestro_compile import emit, expand
from maestro_compile.pipeline import Options, build_study, compile_study

SWEEP = """\
description: {{name: sweep, description: three steps and a funnel}}
study:
  - name: simulate
    description: one point
    run: {{cmd: 'echo $(X) > out.txt'}}
  - name: post
    description: reads the point's output
    run: {{cmd: 'cat $(simulate.workspace)/out.txt > copy.txt', depends: [simulate]}}
  - name: summarize
    description: the funnel
    run: {{cmd: 'find $(post.workspace) -name copy.txt -exec cat {{}} + > all.txt', depends: [post_*]}}
global.parameters:
  X:
    values: [{values}]
    label: X.%%
"""


def sweep(tmp_path: Path, points: int) -> Path:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SWEEP.format(values=", ".join(str(i) for i in range(points))))
    return spec


def workspaces(study, step):
    return [node.workspace for node in study.nodes if node.step == step]


def test_flat_layout_is_maestros_up_to_the_limit(tmp_path):
    study = build_study(Options(spec_path=sweep(tmp_path, 12), out_dir=tmp_path / "s"))
    assert workspaces(study, "simulate")[:3] == ["simulate/X.0", "simulate/X.1", "simulate/X.2"]
    assert not any("grouped" in w for w in study.warnings)


def test_sharded_layout_groups_by_range_and_tokens_follow(tmp_path):
    study = build_study(Options(spec_path=sweep(tmp_path, 1205), out_dir=tmp_path / "s",
                                workspace_layout="sharded"))
    ws = workspaces(study, "simulate")
    assert ws[0] == "simulate/0000-0999/X.0"
    assert ws[999] == "simulate/0000-0999/X.999"
    assert ws[1000] == "simulate/1000-1999/X.1000"
    post = next(n for n in study.nodes if n.name == "post_X.1204")
    assert post.workspace == "post/1000-1999/X.1204"
    assert f"{tmp_path / 's'}/simulate/1000-1999/X.1204/out.txt" in post.cmd
    assert all(len(os.path.basename(os.path.dirname(w))) == 9 for w in ws)


def test_auto_layout_shards_above_the_limit_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(expand, "FLAT_LIMIT", 20)
    monkeypatch.setattr(expand, "SHARD_SIZE", 10)
    study = build_study(Options(spec_path=sweep(tmp_path, 25), out_dir=tmp_path / "s"))
    assert workspaces(study, "simulate")[24] == "simulate/20-29/X.24"
    assert workspaces(study, "summarize") == ["summarize"]
    assert any("'simulate' has 25 parameter combinations" in w and "--workspace-layout flat" in w
               for w in study.warnings)
    flat = build_study(Options(spec_path=sweep(tmp_path, 25), out_dir=tmp_path / "f", workspace_layout="flat"))
    assert workspaces(flat, "simulate")[24] == "simulate/X.24"


def test_sharded_study_runs_end_to_end(tmp_path):
    spec = sweep(tmp_path, 12)
    out = tmp_path / "study"
    run = subprocess.run([sys.executable, "-m", "maestro_compile", "run", str(spec), "-o", str(out),
                          "--workspace-layout", "sharded", "--wait"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (out / "simulate" / "000-999" / "X.11" / "out.txt").read_text() == "11\n"
    lines = (out / "summarize" / "all.txt").read_text().split()
    assert sorted(lines, key=int) == [str(i) for i in range(12)]


def test_parallel_writing_gives_the_same_study_as_serial(tmp_path, monkeypatch):
    spec = sweep(tmp_path, 1000)   # 2,001 nodes: above PARALLEL_FROM, so workers are used
    assert 2 * 1000 + 1 >= emit.PARALLEL_FROM
    monkeypatch.setattr(emit, "MAX_WORKERS", 2)
    monkeypatch.setattr(emit, "_usable_cores", lambda: 2)
    when = __import__("datetime").datetime(2026, 1, 2, 3, 4, 5)
    identities = {}
    for name, workers in (("parallel", 2), ("serial", 1)):
        monkeypatch.setattr(emit, "MAX_WORKERS", workers)
        result = compile_study(Options(spec_path=spec, out_dir=tmp_path / name, backend="slurm", max_array_size=5000),
                               when)
        identities[tmp_path / name] = result.study.identity   # random per compile: the jobs' tag

    def tree(root: Path):
        files = {}
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                text = path.read_text().replace(str(root), "STUDY").replace(identities[root], "ID")
                files[str(path.relative_to(root))] = (text, os.access(path, os.X_OK))
        return files
    parallel, serial = tree(tmp_path / "parallel"), tree(tmp_path / "serial")
    scripts = [path for path in serial if path.endswith(".slurm.sh")]
    assert len(scripts) == 2001 + 2   # one per node, plus the dispatchers of the simulate and post arrays
    assert set(serial) - set(scripts) == {"submit.sh", "study.json", "sweep.yaml"}
    assert parallel == serial


def test_progress_is_reported_per_slice(tmp_path):
    seen = []
    compile_study(Options(spec_path=sweep(tmp_path, 400), out_dir=tmp_path / "s"),
                  progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (801, 801)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert len(seen) == 2   # slices of 500 nodes


def test_manifest_has_one_line_per_node_and_is_json(tmp_path):
    result = compile_study(Options(spec_path=sweep(tmp_path, 30), out_dir=tmp_path / "s"))
    text = (result.directory / "study.json").read_text()
    manifest = json.loads(text)
    assert len(manifest["nodes"]) == 61
    node_lines = [line for line in text.splitlines() if line.startswith('  "simulate_X.')]
    assert len(node_lines) == 30
    assert json.loads(node_lines[0].split(": ", 1)[1].rstrip(","))["workspace"] == "simulate/X.0"


def test_progress_line_only_on_a_terminal():
    from io import StringIO
    from maestro_compile.progress import Progress
    piped = StringIO()
    progress = Progress("writing", piped)
    progress.started -= 10
    progress(5, 10)
    progress.close()
    assert piped.getvalue() == ""

    class Terminal(StringIO):
        def isatty(self):
            return True
    screen = Terminal()
    progress = Progress("writing", screen)
    progress.started -= 10
    progress(5, 10)
    progress(10, 10)
    progress.close()
    assert "\rwriting: 5/10 (50%)" in screen.getvalue()
    assert "\rwriting: 10/10 (100%)" in screen.getvalue()
    assert screen.getvalue().endswith("\r")


def test_submission_progress_counts_the_ledger(tmp_path, monkeypatch):
    from io import StringIO
    from maestro_compile import runner

    class Terminal(StringIO):
        def isatty(self):
            return True
    screen = Terminal()

    class Shown(runner.Progress):
        DELAY = 0.0

        def __init__(self, what):
            super().__init__(what, screen)
    monkeypatch.setattr(runner, "Progress", Shown)
    (tmp_path / "submit.sh").write_text(
        "for i in 1 2 3; do printf 'x\\tn%s\\tj%s\\n' $i $i >> jobs.tsv; sleep 0.6; done\necho queued 3\n")
    assert runner.run_script(tmp_path / "submit.sh", tmp_path, ledger=tmp_path / "jobs.tsv", nodes=3) == "queued 3"
    assert "\rnodes queued: 2/3 (66%)" in screen.getvalue() or "\rnodes queued: 1/3 (33%)" in screen.getvalue()


def test_failed_submission_reports_its_output(tmp_path):
    from maestro_compile import runner
    from maestro_compile.errors import SubmitError
    (tmp_path / "submit.sh").write_text("echo partial; echo 'sbatch: error: no partition' >&2; exit 1\n")
    with pytest.raises(SubmitError, match="no partition"):
        runner.run_script(tmp_path / "submit.sh", tmp_path, nodes=3)


def test_worker_count_follows_the_environment(monkeypatch):
    monkeypatch.setattr(emit, "_usable_cores", lambda: 8)
    monkeypatch.delenv("MAESTRO_COMPILE_WORKERS", raising=False)
    assert emit.worker_count() == emit.MAX_WORKERS
    monkeypatch.setenv("MAESTRO_COMPILE_WORKERS", "1")
    assert emit.worker_count() == 1
    monkeypatch.setenv("MAESTRO_COMPILE_WORKERS", "junk")
    assert emit.worker_count() == emit.MAX_WORKERS
