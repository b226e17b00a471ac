"""Small helpers shared by the end-to-end test modules (local, Slurm, Flux, and the LSF double)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional


def wait_until(predicate: Callable[[], object], what: str, timeout: float, interval: float = 0.25,
               detail: Callable[[], str] = lambda: ""):
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout``
    seconds, saying what was awaited and, from ``detail``, what was seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = detail()
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f"\n{seen}" if seen else ""))
        time.sleep(interval)


def write_study_spec(root: Path, name: str, body: str) -> Path:
    """root/spec/<name>.yaml: a description block named ``name`` followed by ``body`` (dedented)."""
    folder = root / "spec"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"description:\n  name: {name}\n  description: test study {name}\n" + textwrap.dedent(body))
    return path


def study_files(backend, study):
    """The study-level files (submit.sh, array scripts) a backend renders for ``study``, planned
    as `maestro compile` plans them."""
    from maestro_compile.pipeline import plan_study
    return backend.render_study(study, plan_study(study, backend))[0]


def study_manifest_extra(backend, study):
    """The entries ``backend`` adds to study.json for ``study``."""
    from maestro_compile.pipeline import plan_study
    return backend.render_study(study, plan_study(study, backend))[1]


def maestro(*args, cwd: Optional[Path] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI exactly as a user would (new interpreter, no shared state)."""
    return subprocess.run([sys.executable, "-m", "maestro_compile", *map(str, args)], cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def status(study: Path) -> Dict[str, dict]:
    """`maestro status --json`, as node name -> node record (in the CLI's order)."""
    data = json.loads(ok(maestro("status", study, "--json")).stdout)
    return {node["name"]: node for node in data["nodes"]}


def states(study: Path) -> Dict[str, str]:
    return {name: node["state"] for name, node in status(study).items()}


def describe(nodes: Mapping[str, dict]) -> str:
    """One line per node of a status: state, reason, job id (for assertion messages)."""
    return "\n".join(f"  {name}: {n['state']} ({n['reason']}) job {n['job_id']}" for name, n in nodes.items())


def workspace(study: Path, node: dict) -> Path:
    """A node's workspace (status --json gives it absolute)."""
    return study / node["workspace"]
