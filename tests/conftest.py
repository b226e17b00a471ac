"""Shared fixtures. The Slurm tests run against a real one-node cluster that this harness
installs (Debian packages) and starts with tests/slurm/cluster.sh, and stops at the end."""
import os
import subprocess
from pathlib import Path

import pytest

CLUSTER_SCRIPT = Path(__file__).parent / "slurm" / "cluster.sh"


def _cluster(action: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), action], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running Slurm cluster with accounting. In CI a missing cluster fails the tests."""
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
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


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="tests/test_golden.py: rewrite the golden study directories under tests/golden/ "
                          "from the current code instead of comparing (also: MAESTRO_UPDATE_GOLDEN=1)")


@pytest.fixture(scope="session")
def update_golden(request) -> bool:
    """True when the golden files are to be rewritten (--update-golden or MAESTRO_UPDATE_GOLDEN=1)."""
    return bool(request.config.getoption("--update-golden")) or os.environ.get("MAESTRO_UPDATE_GOLDEN") == "1"
