"""Shared fixtures. The Slurm tests run against a real one-node cluster that this harness
installs (Debian packages) and starts with tests/slurm/cluster.sh, and stops at the end; the Flux
tests against a real Flux instance that tests/flux/instance.sh builds (from the vendored source,
when /opt/flux has none) and starts for the session."""
import os
import subprocess
from pathlib import Path
from typing import Dict

import pytest

CLUSTER_SCRIPT = Path(__file__).parent / "slurm" / "cluster.sh"
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
