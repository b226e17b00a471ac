"""The installed package must carry every template (they live in templates/ at the top level)."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_every_template(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path),
                             str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("maestro_compile-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name[len("maestro_compile/templates/"):] for name in archive.namelist()
                   if name.startswith("maestro_compile/templates/") and name.endswith((".j2", ".py"))}
    expected = {str(p.relative_to(ROOT / "templates")) for p in (ROOT / "templates").rglob("*.j2")}
    expected |= {"flux/submit.py", "flux/jobs.py"}     # run by `flux python`
    expected |= {"local/runner.py"}                     # copied into local studies
    assert expected and shipped == expected


def test_templates_found_from_the_package():
    from maestro_compile.render import templates_dir
    assert (templates_dir() / "base" / "step.sh.j2").is_file()
