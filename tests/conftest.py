"""Shared fixtures. The Slurm tests run against a real one-node cluster that this harness
installs (Debian packages) and starts with tests/slurm/cluster.sh, and stops at the end; the PBS
tests against a real one-node OpenPBS server built and started by tests/pbs/server.sh; the Flux
tests against a real Flux instance that tests/flux/instance.sh builds (from the vendored source,
when /opt/flux has none) and starts for the session."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict

import pytest

CLUSTER_SCRIPT = Path(__file__).parent / "slurm" / "cluster.sh"
PBS_SCRIPT = Path(__file__).parent / "pbs" / "server.sh"
PBS_USER = os.environ.get("PBS_TEST_USER", "mcpbs")
PBS_BIN = "/opt/pbs/bin"
SYSTEM_PYTHON = "/usr/bin/python3"
FLUX_SCRIPT = Path(__file__).parent / "flux" / "instance.sh"
FLUX_PREFIX = Path(os.environ.get("FLUX_PREFIX", "/opt/flux"))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _cluster(action: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), action], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running Slurm cluster with accounting. In CI a missing cluster fails the tests."""
    in_ci = _in_ci()
    if os.environ.get("MAESTRO_TEST_SLURM") == "0" and not in_ci:
        pytest.skip("MAESTRO_TEST_SLURM=0: Slurm tests skipped")
    if os.geteuid() != 0:
        message = "the Slurm harness must run as root (it installs and starts the daemons)"
        pytest.fail(message) if in_ci else pytest.skip(message)
    already_up = _cluster("status", 60).returncode == 0
    if not already_up:
        result = _cluster("up", 900)
        if result.returncode != 0:
            pytest.fail(f"could not start the Slurm test cluster:\n{result.stdout}\n{result.stderr}")
    yield
    if not already_up:
        _cluster("down", 120)


def _pbs(action: str, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PBS_TEST_USER=PBS_USER)
    return subprocess.run(["bash", str(PBS_SCRIPT), action], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def pbs_server():
    """A running one-node OpenPBS server and its ordinary test user (root cannot submit). Built
    (about 3 min) and started when needed; left running at the end (restarting it costs 5 s, a
    fresh start 13 s), stop it with tests/pbs/server.sh down. In CI a missing server fails the tests."""
    if os.environ.get("MAESTRO_TEST_PBS") == "0" and not _in_ci():
        pytest.skip("MAESTRO_TEST_PBS=0: PBS tests skipped")
    if os.geteuid() != 0:
        message = "the PBS harness must run as root (it builds, installs and starts the daemons)"
        pytest.fail(message) if _in_ci() else pytest.skip(message)
    if _pbs("status", 60).returncode != 0:
        result = _pbs("up", 1800)
        if result.returncode != 0:
            pytest.fail(f"could not start the PBS test server:\n{result.stdout}\n{result.stderr}")
    # as a login shell would after /etc/profile.d/pbs.sh: the CLI run by the tests finds qstat and qdel
    os.environ["PATH"] = PBS_BIN + os.pathsep + os.environ.get("PATH", "")
    yield PBS_USER


@pytest.fixture(scope="session")
def pbs_cli(pbs_server, tmp_path_factory):
    """The argv prefix that runs the CLI as the PBS test user: the system Python (the harness
    installs Debian's python3-jinja2/-yaml/-voluptuous/-tabulate) with a world-readable copy of
    this checkout's package, so the whole workflow (compile, submit, status, cancel, resubmit) runs
    as that user, as on a real cluster."""
    check = subprocess.run([SYSTEM_PYTHON, "-c", "import jinja2, yaml, voluptuous, tabulate"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        pytest.fail(f"{SYSTEM_PYTHON} lacks the package's dependencies (tests/pbs/server.sh up installs them):\n"
                    f"{check.stderr}")
    root = Path(__file__).resolve().parents[1]
    copy = Path(tempfile.mkdtemp(prefix="mc-pbs-cli-", dir="/tmp"))
    shutil.copytree(root / "maestro_compile", copy / "maestro_compile",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "templates", copy / "templates")
    subprocess.run(["chmod", "-R", "a+rX", str(copy)], check=True)
    home = Path(f"/home/{pbs_server}")
    yield ["runuser", "-u", pbs_server, "--", "env", f"PATH={PBS_BIN}:/usr/local/bin:/usr/bin:/bin",
           f"PYTHONPATH={copy}", f"HOME={home}", "PYTHONDONTWRITEBYTECODE=1", SYSTEM_PYTHON, "-m", "maestro_compile"]
    shutil.rmtree(copy, ignore_errors=True)
class FluxInstance:
    """A running Flux instance: its URI and the environment that reaches it (flux on PATH)."""

    def __init__(self, state: Path, uri: str):
        self.state = state
        self.uri = uri
        self.env: Dict[str, str] = dict(os.environ, FLUX_URI=uri,
                                        PATH=f"{FLUX_PREFIX / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
        for key in ("FLUX_F58_FORCE_ASCII", "FLUX_JOB_ID", "FLUX_ENCLOSING_ID"):
            self.env.pop(key, None)

    def flux(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["flux", *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


def flux_build_or_skip() -> None:
    """A working flux in FLUX_PREFIX, built from the vendored source if missing. In CI a missing
    Flux fails the tests; elsewhere MAESTRO_TEST_FLUX=0 skips them."""
    in_ci = _in_ci()
    if os.environ.get("MAESTRO_TEST_FLUX") == "0" and not in_ci:
        pytest.skip("MAESTRO_TEST_FLUX=0: Flux tests skipped")
    works = subprocess.run([str(FLUX_PREFIX / "bin" / "flux"), "version"], capture_output=True).returncode == 0 \
        if (FLUX_PREFIX / "bin" / "flux").exists() else False
    if works:
        return
    if os.geteuid() != 0:
        message = f"no flux in {FLUX_PREFIX}, and building it needs root (tests/flux/instance.sh build)"
        pytest.fail(message) if in_ci else pytest.skip(message)
    result = subprocess.run(["bash", str(FLUX_SCRIPT), "build"], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        pytest.fail(f"could not build Flux:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")


def start_flux(state: Path, size: int = 1) -> FluxInstance:
    result = subprocess.run(["bash", str(FLUX_SCRIPT), "start", str(state), str(size)], capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"could not start a Flux instance:\n{result.stdout}\n{result.stderr}")
    return FluxInstance(state, result.stdout.strip().splitlines()[-1])


def stop_flux(instance: FluxInstance) -> None:
    subprocess.run(["bash", str(FLUX_SCRIPT), "stop", str(instance.state)], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def flux_instance(tmp_path_factory):
    """One real single-broker Flux instance for the test session, stopped at the end."""
    flux_build_or_skip()
    instance = start_flux(tmp_path_factory.mktemp("flux-instance"))
    yield instance
    stop_flux(instance)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="tests/test_golden.py: rewrite the golden study directories under tests/golden/ "
                          "from the current code instead of comparing (also: MAESTRO_UPDATE_GOLDEN=1)")


@pytest.fixture(scope="session")
def update_golden(request) -> bool:
    """True when the golden files are to be rewritten (--update-golden or MAESTRO_UPDATE_GOLDEN=1)."""
    return bool(request.config.getoption("--update-golden")) or os.environ.get("MAESTRO_UPDATE_GOLDEN") == "1"
