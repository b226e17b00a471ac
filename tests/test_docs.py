"""The documentation cannot rot.

1. Every command line in a fenced code block of README.md, examples/README.md and docs/**/*.md
   that starts with `maestro` or `maestro-compile` (also after a `$ ` prompt or an `&&`) is
   parsed by the real argument parser, so an option that does not exist fails here.
   Synopsis notation is understood: `[--opt VALUE]` (the brackets are dropped), `[spec options]`
   (a bracketed group of words that is not an option is ignored), `A|B` (the first alternative),
   `...`, and ALL-CAPS placeholders after an option (`-j N`), which are replaced by a valid value.
2. The commands are run for real: the whole getting-started page (docs/index.md) in order, in a
   scratch directory holding a copy of examples/, with the outputs it shows compared to the real
   ones; the same for the Python blocks of docs/api.md (in one interpreter); and, from every other page and the README, each `compile`, `validate` and `graph` of an
   example spec and each local `run --wait`. Nothing is ever submitted to a scheduler: for
   Slurm, LSF and Flux only compile-time commands run (with --max-array-size, so that no
   `scontrol` is needed).
3. The references are complete: every complete spec in docs/spec.md passes `maestro validate`
   without warnings, every key the schema knows and every built-in token is in docs/spec.md,
   every command, long option and exit code of the CLI is in docs/cli.md (walked from
   build_parser(), not listed here), every link between the pages resolves, and mkdocs.yml lists
   every page.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
import yaml

import maestro_compile
from maestro_compile import cli, errors
from maestro_compile.schema import KNOWN_KEYS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
INDEX = DOCS / "index.md"
SPEC_PAGE = DOCS / "spec.md"
CLI_PAGE = DOCS / "cli.md"
PROGRAMS = ("maestro", "maestro-compile")
SCHEDULERS = ("slurm", "lsf", "flux", "pbs")
# what a getting-started line may run besides maestro, and what it must never run here
HARMLESS = {"ls", "cat", "grep", "head", "tail", "wc"}
NOT_RUN = {"pip", "pip3", "python", "python3", "sbatch", "squeue", "sacct", "scancel", "scontrol",
           "bsub", "bjobs", "bkill", "bhist", "flux", "qsub", "qstat", "qdel", "qrls", "mkdocs", "cd", "less", "bash"}
# maestro commands that talk to a scheduler (or start work) for a compiled study directory
SUBMITTING = {"submit", "cancel", "resubmit", "run"}
# Maestro's built-in tokens (fixed by Maestro's spec format, see tokens.py and expand.py)
BUILTIN_TOKENS = ("$(OUTPUT_PATH)", "$(SPECROOT)", "$(WORKSPACE)", "$(LAUNCHER)", ".label)", ".name)",
                  ".workspace)")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "text"}


def pages() -> List[Path]:
    return [README, ROOT / "examples" / "README.md"] + sorted(DOCS.rglob("*.md"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------------------------------
# reading the Markdown
# ------------------------------------------------------------------------------------------

@dataclass
class Block:
    path: Path
    line: int                   # line of the opening fence (1-based)
    language: str
    lines: List[str]            # dedented content

    def numbered(self) -> Iterator[Tuple[int, str]]:
        """(line number, text) with backslash continuations joined."""
        pending, start = "", 0
        for offset, text in enumerate(self.lines, start=self.line + 1):
            if not pending:
                start = offset
            if text.rstrip().endswith("\\"):
                pending += text.rstrip()[:-1] + " "
                continue
            yield start, pending + text
            pending = ""
        if pending:
            yield start, pending


FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


def code_blocks(path: Path) -> List[Block]:
    blocks, current, indent, fence = [], None, 0, ""
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(text)
        if current is None:
            if match:
                indent, fence = len(match.group(1)), match.group(2)
                current = Block(path, number, match.group(3).lower(), [])
        elif match and match.group(2).startswith(fence) and not match.group(3):
            blocks.append(current)
            current = None
        else:
            current.lines.append(text[indent:] if text[:indent].strip() == "" else text)
    return blocks


def prose(path: Path) -> str:
    """The page without its fenced code blocks."""
    text = path.read_text(encoding="utf-8").splitlines()
    skip = set()
    for block in code_blocks(path):
        skip.update(range(block.line, block.line + len(block.lines) + 2))
    return "\n".join(line for number, line in enumerate(text, start=1) if number not in skip)


def code_spans(text: str) -> List[str]:
    return re.findall(r"`([^`\n]+)`", text)


# ------------------------------------------------------------------------------------------
# reading command lines
# ------------------------------------------------------------------------------------------

@dataclass
class Command:
    path: Path
    line: int
    text: str                   # the maestro segment as written
    words: List[str]            # shell words after the program name, cut at a pipe or redirection
    program: str = "maestro"

    @property
    def where(self) -> str:
        return f"{rel(self.path)}:{self.line}: {self.text}"


SEPARATOR = re.compile(r"\s+(?:&&|\|\||;)\s+")
STOP = re.compile(r"^(?:\||>|>>|<|\d?>.*|&>.*|&)$")


def segments(line: str) -> List[str]:
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    return [part.strip() for part in SEPARATOR.split(line) if part.strip()]


def words_of(segment: str, where: str) -> List[str]:
    try:
        return shlex.split(segment, comments=True)
    except ValueError as exc:
        pytest.fail(f"{where}: cannot split the command line: {exc}")


def commands_in(path: Path) -> List[Command]:
    found = []
    for block in code_blocks(path):
        if block.language not in SHELL_LANGUAGES:
            continue
        for number, line in block.numbered():
            if block.language == "console" and not line.lstrip().startswith("$ "):
                continue
            for segment in segments(line):
                first = segment.split(maxsplit=1)[0] if segment.split() else ""
                if first not in PROGRAMS:
                    continue
                words = words_of(segment, f"{rel(path)}:{number}")
                cut = next((i for i, word in enumerate(words) if STOP.match(word)), len(words))
                found.append(Command(path, number, segment, words[1:cut], words[0]))
    return found


def subparsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_actions(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(?:[.:][A-Z0-9_]+)?$")


def normalise(words: List[str]) -> List[str]:
    """Synopsis notation to plain arguments (see the module docstring)."""
    result, ignoring = [], False
    for word in words:
        opens, closes = word.startswith("["), word.endswith("]")
        inner = word.lstrip("[").rstrip("]") if (opens or closes) else word
        if opens and not inner.startswith("-"):
            ignoring = True
        if not ignoring and inner not in ("", "...", "…"):
            result.append(inner.split("|")[0] if "|" in inner and not inner.startswith("|") else inner)
        if closes:
            ignoring = False
    return result


def sample_value(action: argparse.Action) -> str:
    if action.choices:
        return str(list(action.choices)[0])
    return "1"


def fill_placeholders(argv: List[str]) -> List[str]:
    """Replace an ALL-CAPS placeholder (or the metavar) given to an option by a valid value."""
    commands = subparsers(cli.build_parser())
    if not argv or argv[0] not in commands:
        return argv
    actions = option_actions(commands[argv[0]])
    argv = list(argv)
    for i, word in enumerate(argv):
        option, _, inline = word.partition("=")
        action = actions.get(option)
        if action is None or action.nargs == 0:
            continue
        if inline:
            if PLACEHOLDER.match(inline) or inline == action.metavar:
                argv[i] = f"{option}={sample_value(action)}"
        elif i + 1 < len(argv) and (PLACEHOLDER.match(argv[i + 1]) or argv[i + 1] == action.metavar):
            argv[i + 1] = sample_value(action)
    return argv


def parse_error(argv: List[str]) -> Optional[str]:
    """None if the real parser accepts argv, else its message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            cli.build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else str(exc.code)
    return None


def all_commands() -> List[Command]:
    return [command for page in pages() if page.exists() for command in commands_in(page)]


# ------------------------------------------------------------------------------------------
# 1. every command line parses
# ------------------------------------------------------------------------------------------

def test_the_extractor_understands_the_notation():
    assert segments("$ pip install . && maestro run x.yaml --wait") == ["pip install .", "maestro run x.yaml --wait"]
    assert normalise(["graph", "SPEC|DIR", "[--format", "dot|mermaid]", "[spec", "options]", "[-j", "N]", "..."]) == \
        ["graph", "SPEC", "--format", "dot", "-j", "N"]
    assert fill_placeholders(["submit", "DIR", "-j", "N"]) == ["submit", "DIR", "-j", "1"]
    assert fill_placeholders(["compile", "SPEC", "--backend", "BACKEND"])[-1] == "local"
    assert parse_error(["compile", "spec.yaml", "--no-such-option"])
    assert parse_error(["status", "DIR", "--json"]) is None
    lines = Block(Path("x"), 1, "bash", ["maestro compile a.yaml \\", "  -o out"]).numbered()
    assert list(lines) == [(2, "maestro compile a.yaml    -o out")]


def test_every_command_in_the_docs_parses():
    commands = all_commands()
    assert len(commands) >= 30, "the command extractor found suspiciously few commands"
    problems = []
    for command in commands:
        argv = fill_placeholders(normalise(command.words))
        message = parse_error(argv)
        if message:
            problems.append(f"{command.where}\n    {message}")
    assert not problems, "commands in the docs that the CLI rejects:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------
# 2. the commands run
# ------------------------------------------------------------------------------------------

def scratch(tmp_path: Path, name: str) -> Path:
    work = tmp_path / name
    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples",
                    ignore=shutil.ignore_patterns("sample_output", "__pycache__", "*.pyc"))
    return work


def environment() -> Dict[str, str]:
    env = dict(os.environ)
    package_parent = str(Path(maestro_compile.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.pop("FLUX_URI", None)
    return env


def maestro(argv: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maestro_compile", *argv], cwd=str(cwd), env=environment(),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)


def positional(argv: List[str]) -> Optional[str]:
    """The first positional argument after the subcommand."""
    commands = subparsers(cli.build_parser())
    if not argv or argv[0] not in commands:
        return None
    actions = option_actions(commands[argv[0]])
    skip = False
    for word in argv[1:]:
        if skip:
            skip = False
            continue
        option = word.partition("=")[0]
        if option in actions:
            skip = actions[option].nargs != 0 and "=" not in word
            continue
        if not word.startswith("-"):
            return word
    return None


def backend_of(argv: List[str], cwd: Path) -> str:
    """The backend a spec-reading command compiles for: --backend, else the spec's batch.type."""
    for i, word in enumerate(argv):
        if word == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--backend="):
            return word.split("=", 1)[1]
    spec = positional(argv)
    if spec and (cwd / spec).is_file():
        data = yaml.safe_load((cwd / spec).read_text(encoding="utf-8")) or {}
        return str((data.get("batch") or {}).get("type", "local"))
    return "local"


def study_backend(cwd: Path, directory: Optional[str]) -> Optional[str]:
    manifest = cwd / (directory or "") / "study.json"
    if directory and manifest.is_file():
        return json.loads(manifest.read_text(encoding="utf-8")).get("backend")
    return None


def offline(argv: List[str], backend: str) -> List[str]:
    """Compile-time commands for a scheduler: give the array size instead of asking scontrol."""
    if backend in SCHEDULERS and not any(w.startswith("--max-array-size") for w in argv):
        return argv + ["--max-array-size", "1000"]
    return argv


def wait_for_local_runner(study: Path, timeout: float = 300) -> None:
    done = study / ".maestro" / "runner.done"
    deadline = time.time() + timeout
    while not done.exists():
        assert time.time() < deadline, f"the local runner of {study} did not finish within {timeout} s"
        time.sleep(0.1)


def assert_no_absolute_paths(command: Command, argv: List[str]) -> None:
    for word in argv:
        assert not os.path.isabs(word), f"{command.where}: the docs must not use machine-specific paths"


@dataclass
class Transcript:
    """What a page's commands printed, block by block (for comparing the outputs it shows)."""

    outputs: Dict[int, List[str]] = field(default_factory=dict)    # block line -> output lines
    complete: Dict[int, bool] = field(default_factory=dict)        # every maestro command of it ran

    def add(self, block: Block, text: str) -> None:
        self.outputs.setdefault(block.line, []).extend(text.splitlines())


def run_line(line: str, number: int, block: Block, work: Path, transcript: Transcript) -> None:
    where = f"{rel(block.path)}:{number}"
    for segment in segments(line):
        words = words_of(segment, where)
        if not words:
            continue
        program = words[0]
        if program in PROGRAMS:
            command = Command(block.path, number, segment, words[1:], program)
            cut = next((i for i, word in enumerate(command.words) if STOP.match(word)), len(command.words))
            ran = run_maestro(command, command.words[:cut], work, transcript, block)
            transcript.complete[block.line] = transcript.complete.get(block.line, True) and ran
        elif program in HARMLESS:
            result = subprocess.run(["bash", "-c", segment], cwd=str(work), capture_output=True, text=True,
                                    timeout=60, stdin=subprocess.DEVNULL)
            assert result.returncode == 0, f"{where}: `{segment}` exited {result.returncode}:\n{result.stderr}"
            transcript.add(block, result.stdout)
            transcript.complete.setdefault(block.line, True)
        else:
            assert program in NOT_RUN, (f"{where}: `{program}`: add it to HARMLESS (safe to run in a scratch "
                                        f"directory) or NOT_RUN in {Path(__file__).name}")


def run_maestro(command: Command, argv: List[str], work: Path, transcript: Transcript, block: Block) -> bool:
    """Run one getting-started command; False when it is a scheduler command we must not run."""
    assert_no_absolute_paths(command, argv)
    assert parse_error(argv) is None, f"{command.where}: {parse_error(argv)}"
    subcommand = argv[0] if argv else ""
    if subcommand in ("compile", "validate", "graph", "run"):
        backend = backend_of(argv, work)
        if subcommand == "run" and backend != "local":
            return False
        argv = offline(argv, backend)
    elif subcommand in SUBMITTING and study_backend(work, positional(argv)) != "local":
        return False
    result = maestro(argv, work)
    assert result.returncode == 0, (f"{command.where}\n    exited {result.returncode}\n{result.stdout}"
                                    f"{result.stderr}")
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, command.where
    transcript.add(block, result.stdout)
    directory = positional(argv)
    if subcommand == "submit" and study_backend(work, directory) == "local":
        wait_for_local_runner(work / directory)
    return True


def shown_output_matches(shown: str, actual: List[str]) -> bool:
    """A line of a ```text block: `...` stands for anything, runs of blanks for one blank."""
    squash = lambda text: " ".join(text.split())  # noqa: E731
    pattern = ".*".join(re.escape(part) for part in squash(shown).split("..."))
    return any(re.fullmatch(pattern, squash(line)) for line in actual)


def test_getting_started_runs_as_written(tmp_path):
    """docs/index.md, every shell block in order, as a user would type it."""
    work = scratch(tmp_path, "getting_started")
    transcript = Transcript()
    blocks = code_blocks(INDEX)
    for block in blocks:
        if block.language in ("bash", "sh", "shell", "console"):
            for number, line in block.numbered():
                if block.language != "console" or line.lstrip().startswith("$ "):
                    run_line(line, number, block, work, transcript)
    # the outputs the page shows (```text right after a ```bash block) are what the commands print
    problems, checked = [], 0
    for previous, block in zip(blocks, blocks[1:]):
        if block.language != "text" or previous.line not in transcript.complete:
            continue
        if not transcript.complete[previous.line]:
            continue  # it shows the output of a scheduler command, which is not run here
        checked += 1
        actual = transcript.outputs.get(previous.line, [])
        for offset, shown in enumerate(block.lines, start=block.line + 1):
            if shown.strip() and not shown_output_matches(shown, actual):
                problems.append(f"{rel(INDEX)}:{offset}: not in the output: {shown.strip()}")
    assert checked >= 3, "expected the getting-started page to show the output of its commands"
    assert not problems, "\n".join(problems) + "\n\nactual output:\n" + "\n".join(
        line for lines in transcript.outputs.values() for line in lines)
    # what the text claims about the results
    status = maestro(["status", "hello_study", "--json"], work)
    nodes = json.loads(status.stdout)["nodes"]
    assert len(nodes) == 8 and {node["state"] for node in nodes} == {"FINISHED"}
    assert "--array=0-2%2" in (work / "sweep_throttled" / "submit.sh").read_text()


def runnable_elsewhere() -> List[Command]:
    """Commands outside the getting-started page that can run here without a scheduler."""
    chosen = []
    for page in [README] + sorted(DOCS.rglob("*.md")):
        if page == INDEX:
            continue
        for command in commands_in(page):
            argv = command.words
            spec = positional(argv)
            if not argv or not spec or not spec.startswith("examples/") or not (ROOT / spec).is_file():
                continue
            if argv[0] == "run" and "--wait" not in argv:
                continue
            out = next((argv[i + 1] for i, w in enumerate(argv[:-1]) if w in ("-o", "--out")), "")
            if argv[0] == "graph" and Path(out).suffix in (".svg", ".png", ".pdf"):
                continue  # needs Graphviz; tests/test_graph.py covers drawing
            if argv[0] in ("compile", "validate", "graph", "run"):
                chosen.append(command)
    return chosen


@pytest.mark.parametrize("command", runnable_elsewhere(), ids=lambda c: f"{rel(c.path)}:{c.line}")
def test_example_commands_run(command, tmp_path):
    work = scratch(tmp_path, "work")
    argv = command.words
    assert_no_absolute_paths(command, argv)
    backend = backend_of(argv, work)
    if argv[0] == "run" and backend != "local":
        pytest.skip("would submit to a scheduler")
    result = maestro(offline(argv, backend), work)
    assert result.returncode == 0, f"{command.where}\n    exited {result.returncode}\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr


def test_readme_first_command_runs_and_every_step_finishes(tmp_path):
    """The README's "Try it" command (pip install is not run here: the package is installed)."""
    runs = [c for c in commands_in(README) if c.words[:1] == ["run"] and "--wait" in c.words
            and (ROOT / (positional(c.words) or "-")).is_file()]
    assert runs, "README.md should show a `maestro run <example> --wait` command"
    work = scratch(tmp_path, "readme")
    result = maestro(runs[0].words, work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"(\d+) node\(s\): \1 FINISHED", result.stdout), result.stdout


# ------------------------------------------------------------------------------------------
# 2b. the maestrowf flag table of docs/migrating.md: every example runs, with its exit code and note
# ------------------------------------------------------------------------------------------

MIGRATING = DOCS / "migrating.md"
MAESTROWF_HEADING = "## Commands and options"
PGEN_PAGE = DOCS / "pgen.md"


@dataclass
class FlagRow:
    line: int
    flag: str                   # the maestrowf cell
    argv: List[str]             # the example, after the program name
    exit_code: int
    note: Optional[str]         # the start of the one `note:` line expected on stderr


def table_cells(line: str) -> List[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def maestrowf_rows() -> List[FlagRow]:
    """The rows of the table under "## Commands and options": maestrowf | here | example | exit, note."""
    lines = MIGRATING.read_text(encoding="utf-8").splitlines()
    start = lines.index(MAESTROWF_HEADING)
    rows = []
    for number, line in enumerate(lines[start + 1:], start=start + 2):
        if line.startswith("## "):
            break
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = table_cells(line)
        if cells[0] == "maestrowf 1.2.1":
            assert cells[1:] == ["what it does here", "example", "exit, note"], f"migrating.md:{number}: {cells}"
            continue
        example = next((span for span in code_spans(cells[2]) if span.split()[0] in PROGRAMS), None)
        assert example, f"migrating.md:{number}: the row of {cells[0]} has no example command"
        result = re.fullmatch(r"(\d+)(?:, `(note: [^`]+)`)?", cells[3])
        assert result, f"migrating.md:{number}: expected '<exit code>[, `note: ...`]', found {cells[3]!r}"
        rows.append(FlagRow(number, cells[0], shlex.split(example)[1:], int(result.group(1)), result.group(2)))
    return rows


def flags_of(cell: str) -> List[str]:
    """The options named in a maestrowf cell (`-t`, `--throttle N`, `maestro -l LOGPATH`, ...)."""
    return [word for span in code_spans(cell) for word in span.split() if word.startswith("-")]


def test_the_maestrowf_table_names_every_maestrowf_flag():
    """Every option of maestrowf 1.2.1 (its `maestro --help` and the help of each command)."""
    every = {"-l", "--logpath", "-d", "--debug_lvl", "-c", "--logstdout", "-v", "--version",
             "-a", "--attempts", "-r", "--rlimit", "-t", "--throttle", "-s", "--sleeptime", "--dry", "-p", "--pgen",
             "--pargs", "-o", "--out", "-fg", "--hashws", "-n", "--autono", "-y", "--autoyes", "--usetmp",
             "--layout", "--disable-theme", "--disable-pager", "--sleep"}
    named = {flag for row in maestrowf_rows() for flag in flags_of(row.flag)}
    missing = sorted(every - named)
    assert not missing, f"maestrowf flags missing from the table of docs/migrating.md: {missing}"
    commands = {row.flag.split("`")[1].split()[1] for row in maestrowf_rows() if row.flag.startswith("`maestro ")
                and not row.flag.startswith("`maestro -")}
    assert {"run", "status", "cancel", "update"} <= commands, commands


def test_the_maestrowf_table_runs_as_documented(tmp_path):
    """Every example of the table, in order, in one scratch directory (local backend)."""
    work = scratch(tmp_path, "maestrowf")
    pgen = next(block for block in code_blocks(PGEN_PAGE) if block.language == "python")
    (work / "params.py").write_text("\n".join(pgen.lines) + "\n", encoding="utf-8")
    rows = maestrowf_rows()
    assert len(rows) >= 20
    for row in rows:
        where = f"docs/migrating.md:{row.line}: maestro {' '.join(row.argv)}"
        assert parse_error(row.argv) is None, f"{where}: {parse_error(row.argv)}"
        result = maestro(row.argv, work)
        assert result.returncode == row.exit_code, f"{where}\n    exited {result.returncode}, not {row.exit_code}:" \
                                                   f"\n{result.stdout}{result.stderr}"
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, where
        notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
        if row.note:
            assert len(notes) == 1 and notes[0].startswith(row.note), f"{where}\n    notes: {notes}"
        else:
            assert not notes, f"{where}\n    unexpected notes: {notes}"
        if row.exit_code:
            assert result.stderr.startswith("error: "), f"{where}\n{result.stderr}"
        if row.argv[0] == "run":
            study = work / positional_out(row.argv)
            if (study / ".maestro" / "submitted").exists():
                wait_for_local_runner(study)
    # what the rows claim beyond their exit codes
    assert not (work / "study_n" / ".maestro" / "submitted").exists()
    assert not (work / "study_dry" / ".maestro" / "submitted").exists()
    assert (work / "study_bg" / ".maestro" / "submitted").exists()      # no terminal here: no question
    assert "==> study1 <==" in maestro(["status", "study1", "study2"], work).stdout
    assert "status study1" in (work / "maestro.log").read_text()


def positional_out(argv: List[str]) -> str:
    return next(argv[i + 1] for i, word in enumerate(argv[:-1]) if word in ("-o", "--out"))


# ------------------------------------------------------------------------------------------
# 2c. the Python API page runs as written
# ------------------------------------------------------------------------------------------

API_PAGE = DOCS / "api.md"
BLOCK_MARK = "\x00block "
# runs the page's python blocks in order in one namespace; a traceback names the page and block
API_DRIVER = f"""
import json, sys
namespace = {{"__name__": "__main__"}}
for line, source in json.load(sys.stdin):
    print({BLOCK_MARK!r} + str(line), flush=True)
    exec(compile(source, "docs/api.md, the block of line " + str(line), "exec"), namespace)
"""


def test_api_page_runs_as_written(tmp_path):
    """Every ```python block of docs/api.md, in order, in one interpreter started in a scratch
    directory holding examples/; a ```text block right after one shows lines of its output."""
    work = scratch(tmp_path, "api")
    blocks = code_blocks(API_PAGE)
    python = [block for block in blocks if block.language == "python"]
    assert len(python) >= 5, "expected docs/api.md to show the API in several python blocks"
    result = subprocess.run([sys.executable, "-c", API_DRIVER], cwd=str(work), env=environment(), text=True,
                            input=json.dumps([(block.line, "\n".join(block.lines)) for block in python]),
                            capture_output=True, timeout=600)
    assert result.returncode == 0, f"docs/api.md: a python block failed:\n{result.stdout}\n{result.stderr}"
    outputs: Dict[int, List[str]] = {}
    for chunk in result.stdout.split(BLOCK_MARK)[1:]:
        line, _, text = chunk.partition("\n")
        outputs[int(line)] = text.splitlines()
    problems, checked = [], 0
    for previous, block in zip(blocks, blocks[1:]):
        if previous.language != "python" or block.language != "text":
            continue
        checked += 1
        for offset, shown in enumerate(block.lines, start=block.line + 1):
            if shown.strip() and not shown_output_matches(shown, outputs[previous.line]):
                problems.append(f"{rel(API_PAGE)}:{offset}: not in the output: {shown.strip()}")
    assert checked >= 5, "expected docs/api.md to show the output of its examples"
    assert not problems, "\n".join(problems) + "\n\nactual output:\n" + result.stdout


# ------------------------------------------------------------------------------------------
# 3. the references are complete and consistent
# ------------------------------------------------------------------------------------------

def yaml_blocks(path: Path) -> List[Block]:
    return [block for block in code_blocks(path) if block.language in ("yaml", "yml")]


def test_every_yaml_snippet_in_the_docs_is_valid_yaml():
    for page in sorted(DOCS.rglob("*.md")):
        for block in yaml_blocks(page):
            try:
                yaml.safe_load("\n".join(block.lines))
            except yaml.YAMLError as exc:
                pytest.fail(f"{rel(page)}:{block.line}: invalid YAML: {exc}")


def complete_specs() -> List[Block]:
    specs = []
    for block in yaml_blocks(SPEC_PAGE):
        data = yaml.safe_load("\n".join(block.lines))
        if isinstance(data, dict) and "study" in data:
            specs.append(block)
    return specs


def test_spec_page_has_complete_examples():
    assert len(complete_specs()) >= 5


@pytest.mark.parametrize("block", complete_specs(), ids=lambda b: f"spec.md:{b.line}")
def test_complete_spec_examples_validate(block, tmp_path):
    spec = tmp_path / "example.yaml"
    spec.write_text("\n".join(block.lines) + "\n", encoding="utf-8")
    result = maestro(["validate", str(spec), "--max-array-size", "1000"], tmp_path)
    assert result.returncode == 0, f"docs/spec.md:{block.line}:\n{result.stderr}"
    assert "warning:" not in result.stderr, f"docs/spec.md:{block.line}:\n{result.stderr}"


def documented_keys(path: Path) -> set:
    """Keys named in code spans (`key`, `run.key`, `key: value`, `{key: ...}`) or YAML examples."""
    found = set()
    texts = [span.strip() for span in code_spans(prose(path))]
    texts += [line for block in yaml_blocks(path) for line in block.lines]
    for text in texts:
        found.update((text, text.split(".")[-1], text.split(" (")[0]))
        found.update(key.strip() for key in re.findall(r"([A-Za-z_][\w .]*?)\s*:", text))
    return found


def test_spec_page_names_every_key_the_schema_knows():
    known = documented_keys(SPEC_PAGE)
    missing = [f"{block}: {key}" for block, keys in KNOWN_KEYS.items() for key in keys if key not in known]
    assert not missing, "keys accepted by the schema but not documented in docs/spec.md:\n" + "\n".join(missing)


def test_spec_page_names_every_builtin_token():
    text = SPEC_PAGE.read_text(encoding="utf-8")
    missing = [token for token in BUILTIN_TOKENS if token not in text]
    assert not missing, f"tokens missing from docs/spec.md: {missing}"
    assert "$(LAUNCHER)[" in text and "%%" in text and "_*" in text


def long_options() -> Dict[str, List[str]]:
    """subcommand ('' for the program itself) -> its long options, walked from build_parser()."""
    parser = cli.build_parser()
    result = {"": [o for o in option_actions(parser) if o.startswith("--")]}
    for name, sub in subparsers(parser).items():
        result[name] = [o for o in option_actions(sub) if o.startswith("--")]
    return result


def test_cli_page_documents_every_command_and_option():
    text = CLI_PAGE.read_text(encoding="utf-8")
    headings = set(re.findall(r"^#+\s+maestro ([\w-]+)\s*$", text, re.M))
    problems = []
    for command, options in long_options().items():
        if command and command not in headings:
            problems.append(f"no section '## maestro {command}'")
        for option in options:
            if not re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", text):
                problems.append(f"{('maestro ' + command).strip()}: option {option} is not documented")
    assert not problems, "docs/cli.md is incomplete:\n" + "\n".join(problems)


def test_cli_page_mentions_no_option_that_does_not_exist():
    existing = {option for options in long_options().values() for option in options}
    named = {span.split()[0].split("=")[0] for span in code_spans(prose(CLI_PAGE)) if span.startswith("--")}
    unknown = sorted(named - existing)
    assert not unknown, f"docs/cli.md names options the CLI does not have: {unknown}"


def test_cli_page_documents_every_exit_code():
    codes = {0, 130}   # success, Ctrl-C (cli.main)
    codes |= {value for name, value in vars(cli).items() if name.startswith("EXIT_") and isinstance(value, int)}
    codes |= {value for name, value in vars(errors).items() if name.startswith("EXIT_") and isinstance(value, int)}
    codes |= {cls.exit_code for cls in vars(errors).values()
              if isinstance(cls, type) and issubclass(cls, errors.MaestroCompileError)}
    table = set(int(code) for code in re.findall(r"^\|\s*(\d+)\s*\|", CLI_PAGE.read_text(encoding="utf-8"), re.M))
    assert codes <= table, f"exit codes missing from the table in docs/cli.md: {sorted(codes - table)}"


def slug(heading: str) -> str:
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", text)


def anchors(path: Path) -> set:
    return {slug(title) for title in re.findall(r"^#+\s+(.*?)\s*$", prose(path), re.M)}


def test_links_between_pages_resolve():
    problems = []
    for page in [README] + sorted(DOCS.rglob("*.md")):
        for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", prose(page)):
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            destination = (page.parent / file_part).resolve() if file_part else page
            if not destination.exists():
                problems.append(f"{rel(page)}: link to a missing file: {target}")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                problems.append(f"{rel(page)}: link to a missing heading: {target}")
    assert not problems, "\n".join(problems)


def nav_pages(entries) -> List[str]:
    found = []
    for entry in entries:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                found.extend(nav_pages(value) if isinstance(value, list) else [value])
    return found


def test_mkdocs_nav_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs"
    listed = nav_pages(config["nav"])
    missing = [page for page in listed if not (DOCS / page).is_file()]
    assert not missing, f"mkdocs.yml lists pages that do not exist: {missing}"
    unlisted = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in listed)
    assert not unlisted, f"pages missing from the nav of mkdocs.yml: {unlisted}"


def test_mkdocs_builds_the_site_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is optional: pip install -e '.[docs]'")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
