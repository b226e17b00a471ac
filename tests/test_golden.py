"""Golden tests: the study directory compiled from every example spec (examples/**/*.yaml) and
from the specs in tests/golden/specs/, for every backend, compared byte for byte with the
normalized copy kept under tests/golden/<spec stem>/<backend>/.

Normalization (see tests/golden/README.md): the absolute study directory becomes ``@STUDY@``, the
spec's absolute folder ``@SPECDIR@``, study.json's "created" value ``@CREATED@``, the study's
random id (the tag of its jobs) ``@STUDYID@``; the type and
permission bits of every entry are listed in the extra file ``@MODES``.

To accept a change of the rendered output on purpose:
    python3 -m pytest tests/test_golden.py --update-golden    (or MAESTRO_UPDATE_GOLDEN=1)
then review ``git diff tests/golden`` and commit it with the change.
"""
from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from maestro_compile import cli

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
EXTRA_SPECS = GOLDEN / "specs"
BACKENDS = ("local", "slurm", "lsf", "flux", "pbs")
MODES = "@MODES"
NOT_SPECS = {"specs"}          # directories of tests/golden that are not golden outputs
MAX_DIFF_LINES = 200
UPDATE_HINT = ("If this change of the rendered output is intended, rewrite the goldens with\n"
               "    python3 -m pytest tests/test_golden.py --update-golden\n"
               "(or MAESTRO_UPDATE_GOLDEN=1), then review `git diff tests/golden` and commit it with the change.")
# A path written into a script unquoted must stay unquoted once normalized: shlex.quote leaves
# exactly these characters alone, so the study and spec folders must consist of them.
PLAIN_PATH = re.compile(r"^[\w@%+=:,./-]+$", re.ASCII)
CREATED = re.compile(rb'("created":\s*)"[^"\n]*"')
# package data copied into every study of a backend: a golden names the file instead of holding it
VERBATIM = {(ROOT / "templates" / source).read_bytes(): f"@a verbatim copy of templates/{source}@\n".encode()
            for source in ("flux/submit.py", "local/runner.py")}
STUDY_ID = re.compile(rb'"id":\s*"([0-9a-f]+)"')


def _specs() -> List[Path]:
    specs = sorted(ROOT.glob("examples/**/*.yaml")) + sorted(EXTRA_SPECS.glob("*.yaml"))
    stems: Dict[str, Path] = {}
    for spec in specs:
        if spec.stem in stems or spec.stem in NOT_SPECS:
            raise RuntimeError(f"golden tests: {spec} and {stems.get(spec.stem, 'tests/golden/')} would share "
                               f"the golden directory tests/golden/{spec.stem}; rename one")
        stems[spec.stem] = spec
    return specs


SPECS = _specs()
CASES = [pytest.param(spec, backend, id=f"{spec.stem}-{backend}") for spec in SPECS for backend in BACKENDS]


# --- compile and normalize ---------------------------------------------------------------------

def _compile(spec: Path, out: Path, backend: str) -> None:
    """The CLI in this process, with a fixed umask (it decides the modes) and one writer."""
    argv = ["compile", str(spec), "-o", str(out), "--backend", backend, "--max-array-size", "1001"]
    stdout, stderr = io.StringIO(), io.StringIO()
    old_mask = os.umask(0o022)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(argv)
    finally:
        os.umask(old_mask)
    assert code == 0, f"maestro {' '.join(argv)} exited {code}:\n{stdout.getvalue()}{stderr.getvalue()}"


def _replacements(study: Path, spec: Path) -> List[Tuple[bytes, bytes]]:
    """Each absolute path as it can appear (raw, or escaped in JSON), longest first."""
    pairs = []
    for path, token in ((str(study), "@STUDY@"), (str(spec.resolve().parent), "@SPECDIR@")):
        if not PLAIN_PATH.match(path):
            pytest.skip(f"golden tests need a folder whose path shell quoting leaves alone, got {path!r}")
        for form in {path, json.dumps(path)[1:-1]}:
            pairs.append((form.encode(), token.encode()))
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def _escape(relpath: str) -> str:
    return relpath.replace("\\", "\\\\").replace("\n", "\\n")


def normalized_tree(study: Path, spec: Path) -> Dict[str, bytes]:
    """relative path -> normalized bytes for every file of the study, plus @MODES."""
    replacements = _replacements(study, spec)
    identity = STUDY_ID.search((study / "study.json").read_bytes())
    assert identity, "study.json has no \"id\" to normalize: update this test's STUDY_ID"
    replacements.append((identity.group(1), b"@STUDYID@"))   # random per compile: the jobs' tag
    files: Dict[str, bytes] = {}
    modes: List[Tuple[str, str]] = []
    for directory, dirnames, filenames in os.walk(study):
        dirnames.sort()
        for name in dirnames + filenames:
            path = Path(directory, name)
            relpath = path.relative_to(study).as_posix()
            info = path.lstat()
            modes.append((relpath, stat.filemode(info.st_mode)))
            if stat.S_ISDIR(info.st_mode):
                continue
            assert stat.S_ISREG(info.st_mode), f"{relpath}: compile wrote something that is not a file or directory"
            data = path.read_bytes()
            for old, new in replacements:
                data = data.replace(old, new)
            data = VERBATIM.get(data, data)
            if relpath == "study.json":
                data, count = CREATED.subn(rb'\1"@CREATED@"', data, count=1)
                assert count == 1, "study.json has no \"created\" value to normalize: update this test's CREATED"
            files[relpath] = data
    assert MODES not in files, f"the study has a file named {MODES}, which the golden layout reserves"
    listing = [f"{stat.filemode(study.stat().st_mode)} ."]
    listing += [f"{mode} {_escape(relpath)}" for relpath, mode in sorted(modes)]
    files[MODES] = ("\n".join(listing) + "\n").encode()
    leaks = [relpath for relpath, data in files.items() if str(ROOT).encode() in data or str(study).encode() in data]
    assert not leaks, f"absolute paths of this machine left after normalization in: {leaks}"
    return files


def golden_tree(directory: Path) -> Dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def write_golden(directory: Path, files: Dict[str, bytes]) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    for relpath, data in files.items():
        target = directory / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


# --- comparison --------------------------------------------------------------------------------

def _text(data: bytes) -> List[str]:
    return data.decode("utf-8", errors="replace").splitlines(keepends=True)


def describe_differences(name: str, expected: Dict[str, bytes], actual: Dict[str, bytes]) -> str:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differing = sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p])
    if not (missing or extra or differing):
        return ""
    lines = [f"the compiled study differs from the golden tests/golden/{name}:"]
    lines += [f"  missing (in the golden, not compiled): {p}" for p in missing]
    lines += [f"  extra (compiled, not in the golden): {p}" for p in extra]
    lines += [f"  differs: {p}" for p in differing]
    diff: List[str] = []
    for relpath in differing:
        for line in difflib.unified_diff(_text(expected[relpath]), _text(actual[relpath]),
                                         f"golden/{relpath}", f"compiled/{relpath}"):
            diff.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    if len(diff) > MAX_DIFF_LINES:
        diff = diff[:MAX_DIFF_LINES] + [f"... ({len(diff) - MAX_DIFF_LINES} more diff lines not shown)\n"]
    return "\n".join(lines) + "\n\n" + "".join(diff) + "\n" + UPDATE_HINT


# --- the tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, backend", CASES)
def test_golden(spec: Path, backend: str, tmp_path: Path, monkeypatch, update_golden: bool):
    monkeypatch.setenv("MAESTRO_COMPILE_WORKERS", "1")
    monkeypatch.chdir(tmp_path)
    name = f"{spec.stem}/{backend}"
    study = tmp_path / "study"
    _compile(spec, study, backend)
    actual = normalized_tree(study, spec)
    if update_golden:
        # never record output that another compile (to a path of another length) would not repeat
        again = tmp_path / "a" / "second-study-directory-with-a-longer-path"
        _compile(spec, again, backend)
        problem = describe_differences(f"{name} (first compile)", actual, normalized_tree(again, spec))
        if problem:
            pytest.fail("compile is not deterministic; goldens not written:\n" + problem, pytrace=False)
        write_golden(GOLDEN / spec.stem / backend, actual)
    problem = describe_differences(name, golden_tree(GOLDEN / spec.stem / backend), actual)
    if problem:
        pytest.fail(problem, pytrace=False)


def test_no_stale_golden_directories(update_golden: bool):
    """Every golden directory belongs to a spec and backend that is still compiled."""
    expected = {f"{spec.stem}/{backend}" for spec in SPECS for backend in BACKENDS}
    stale = []
    for top in sorted(p for p in GOLDEN.iterdir() if p.is_dir() and p.name not in NOT_SPECS):
        subdirs = list(top.iterdir())
        for sub in subdirs:
            if f"{top.name}/{sub.name}" not in expected:
                stale.append(sub)
        if not any(f"{top.name}/{sub.name}" in expected for sub in subdirs):
            stale.append(top)
    if update_golden:
        for path in stale:
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        return
    names = sorted({p.relative_to(GOLDEN).as_posix() for p in stale})
    if names:
        pytest.fail(f"golden directories with no spec or backend behind them: {names}\n{UPDATE_HINT}\n"
                    f"(--update-golden deletes them)", pytrace=False)


def test_git_keeps_every_golden_file():
    """The top-level .gitignore lists names (build/, dist/, site/) that are also step names."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = [p.relative_to(ROOT).as_posix() for p in sorted(GOLDEN.rglob("*")) if p.is_file()]
    result = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", "--stdin", "-z"], cwd=ROOT,
                            input="\0".join(paths).encode(), capture_output=True, timeout=60)
    assert result.returncode in (0, 1), result.stderr.decode()
    fields = result.stdout.decode().split("\0")
    ignored = [f"{path} (by {source}:{line}: {pattern})"
               for source, line, pattern, path in zip(*[iter(fields)] * 4)]
    assert not ignored, ("git ignores golden files; add a negation to tests/golden/.gitignore:\n  "
                         + "\n  ".join(ignored[:40]))
