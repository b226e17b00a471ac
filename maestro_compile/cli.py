"""Command line: compile | validate | submit | status | cancel | run | graph | resubmit | update.
The one error boundary. maestrowf's own flags are accepted too (commands.py)."""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import traceback
from pathlib import Path
from typing import List, Optional, Tuple

from . import __version__, api
from . import commands as maestrowf
from .backends import BACKENDS
from .errors import EXIT_USAGE, MaestroCompileError, SpecError, UsageError
from .expand import FLAT_LIMIT, LAYOUTS, SHARD_SIZE
from .graph import draw as draw_graph, target_positional as graph_positional
from .pipeline import Options
from .progress import Progress
from .states import State, parse_state
from .status import SUMMARY_LIMIT, format_csv, format_json, format_summary
from .studydir import StudyDir
from .update import update

# Exit codes (docs/cli.md); the others come with the errors (errors.py): 1 user error,
# 64 command-line usage, 69 scheduler command failed or unreachable.
EXIT_FAILED_STEPS = 2      # run --wait: some step failed (Maestro's FAILURE)
EXIT_CANCELLED = 3         # run --wait: the study was cancelled (Maestro's CANCELLED)
EXIT_INTERNAL = 4
REPORT = "please report it with the output of the same command run with --debug"


def _spec_options(parser: argparse.ArgumentParser, with_out: bool = True) -> None:
    parser.add_argument("spec", type=Path, help="the study specification (YAML)")
    if with_out:
        parser.add_argument("-o", "--out", type=Path, metavar="DIR",
                            help="the study directory to create (default: <OUTPUT_PATH or cwd>/<name>_<timestamp>)")
    parser.add_argument("--backend", choices=list(BACKENDS),
                        help="scheduler to compile for (overrides batch.type)")
    parser.add_argument("-p", "--pgen", type=Path, metavar="FILE", help="custom parameter generator (Python file)")
    parser.add_argument("--pargs", action="append", default=[], metavar="KEY:VALUE",
                        help="argument for the parameter generator (repeatable)")
    parser.add_argument("--hashws", action="store_true",
                        help="name parameterized workspaces <step>_instance_<i> instead of by their labels")
    parser.add_argument("--cartesian", action="store_true",
                        help="combine parameters as a Cartesian product instead of row by row")
    parser.add_argument("--strict", action="store_true", help="treat unknown $(TOKEN)s as errors")
    parser.add_argument("--workspace-layout", choices=LAYOUTS, default="auto",
                        help=f"flat: every workspace of a step in the step's directory (Maestro's layout); "
                             f"sharded: in subdirectories of {SHARD_SIZE} combinations; auto (default): flat "
                             f"up to {FLAT_LIMIT} combinations per step, sharded above")
    parser.add_argument("-t", "--throttle", type=_non_negative, default=0, metavar="T",
                        help="schedulers: run at most T tasks of each job array at once (0: no limit)")
    parser.add_argument("--retries", type=_non_negative, default=0, metavar="N",
                        help="rerun a failed step inside its job up to N times before it counts as failed")
    parser.add_argument("-r", "--rlimit", type=_non_negative, default=1, metavar="N",
                        help="schedulers: restart a timed-out step with its `restart` command up to N times "
                             "(0: unlimited; default 1, as in Maestro)")
    parser.add_argument("--max-array-size", type=_positive, default=0, metavar="N",
                        help="schedulers: split job arrays into chunks of at most N tasks "
                             "(default: the cluster's MaxArraySize, read with scontrol)")
    parser.add_argument("--bundle", type=_positive, default=0, metavar="K",
                        help="schedulers: run K nodes of a step in one job (a bundle); see docs/big-sweeps.md")
    parser.add_argument("--max-queued", type=_positive, default=0, metavar="N",
                        help="schedulers: bundle nodes so that at most N jobs are queued at once (default: "
                             "the cluster's MaxSubmitJobs, read with sacctmgr; none: one job per node)")


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on an exit code of their own (2 is `run --wait`'s FAILURE)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="maestro", description="Compile Maestro study specifications into batch scripts and a submit "
                                    "script that chains them with the scheduler's own dependencies.")
    parser.add_argument("-v", "--version", action="version", version=f"maestro_compile {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a full traceback on internal errors")
    maestrowf.global_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = commands.add_parser("compile", help="write the study directory (scripts, submit.sh, study.json)")
    _spec_options(p)
    p = commands.add_parser("validate", help="check a spec (schema, names, DAG, tokens); writes nothing")
    _spec_options(p, with_out=False)
    p = commands.add_parser("submit", help="submit a compiled study and return")
    p.add_argument("study_dir", type=Path)
    _jobs_option(p)
    p = commands.add_parser("status", help="show the state of every step of one or more studies")
    p.add_argument("study_dirs", type=Path, nargs="+", metavar="DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output (several DIRs: a JSON array)")
    p.add_argument("--csv", metavar="FILE", help="also write Maestro's status.csv format to FILE ('-' for stdout)")
    p.add_argument("--summary", action="store_true",
                   help="counts per step and state instead of a row per node, and the nodes that did not finish")
    p.add_argument("--limit", type=_non_negative, metavar="N",
                   help=f"with --summary: list at most N nodes that did not finish per step (default {SUMMARY_LIMIT})")
    p.add_argument("--step", action="append", default=[], metavar="NAME",
                   help="only the nodes of this step (repeatable)")
    p.add_argument("--state", action="append", default=[], type=_state, choices=list(State), metavar="STATE",
                   help="only the nodes in this state, in any case (repeatable): " + ", ".join(State))
    p.add_argument("--watch", nargs="?", const=WATCH_DEFAULT, type=_watch_interval, metavar="SECONDS",
                   help=f"show the status again every SECONDS (default {WATCH_DEFAULT:g}, at least "
                        f"{WATCH_MINIMUM:g}) until the study can no longer change; in place on a terminal")
    maestrowf.status_options(p)
    p = commands.add_parser("cancel", help="stop running steps and prevent the rest, in one or more studies")
    p.add_argument("study_dirs", type=Path, nargs="+", metavar="DIR")
    p.add_argument("-y", "--autoyes", action="store_true", help="accepted for maestrowf; cancel never asks")
    p = commands.add_parser("resubmit", help="submit again the steps that failed, timed out or were cancelled, "
                                             "and every step below them")
    p.add_argument("study_dir", type=Path)
    p.add_argument("--only", action="append", default=[], metavar="STEP_OR_NODE",
                   help="resubmit only the failed nodes of this step, or this node (repeatable); "
                        "their descendants still come along")
    p.add_argument("--dry", action="store_true", help="print what would be resubmitted; write and submit nothing")
    _jobs_option(p)
    p = commands.add_parser("graph", help="draw the DAG: DOT or Mermaid text, or an image through Graphviz")
    _spec_options(p, with_out=False)
    graph_positional(p)
    p.add_argument("--format", choices=["dot", "mermaid"],
                   help="text to print (default: dot; with -o the extension decides)")
    p.add_argument("-o", "--out", type=Path, metavar="FILE",
                   help="write FILE instead of stdout: .dot/.gv (DOT), .mmd (Mermaid), .md (Mermaid block), "
                        ".svg/.png/.pdf (drawn by Graphviz's dot)")
    p.add_argument("--nodes", action="store_true",
                   help="one vertex per node instead of one per step")
    p.add_argument("--no-status", action="store_true",
                   help="study directory: do not colour the nodes by their state")
    p = commands.add_parser("run", help="compile and submit (Maestro's spelling)")
    _spec_options(p)
    _jobs_option(p)
    p.add_argument("--wait", action="store_true",
                   help="block until the study ends; exit 0 only if every step finished")
    p.add_argument("--poll", type=float, default=1.0, metavar="SECONDS", help="status interval with --wait")
    maestrowf.run_options(p)
    p = commands.add_parser("update", help="change the throttle of submitted studies (maestrowf's update)")
    maestrowf.update_options(p)
    return parser


def _jobs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--jobs", type=_positive, metavar="N",
                        default=maestrowf.DefaultJobs(os.cpu_count() or 1),   # told apart from a -j given
                        help="local backend: run at most N steps at once (default: number of cores)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return value


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got '{text}'")
    return int(text)


def _state(text: str) -> State:
    try:
        return parse_state(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


WATCH_DEFAULT = 30.0    # seconds; on a scheduler every redraw runs its status query
WATCH_MINIMUM = 1.0


def _watch_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not WATCH_MINIMUM <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= {WATCH_MINIMUM:g}, got '{text}'")
    return value


def _spec_arguments(args: argparse.Namespace) -> dict:
    """The spec options as the Python API's keyword arguments (the same names)."""
    return dict(backend=args.backend, pgen=args.pgen, pargs=args.pargs, hashws=args.hashws,
                cartesian=args.cartesian, strict=args.strict, throttle=args.throttle, retries=args.retries,
                rlimit=args.rlimit, max_array_size=args.max_array_size, workspace_layout=args.workspace_layout,
                bundle=args.bundle, max_queued=args.max_queued)


def _options(args: argparse.Namespace) -> Options:
    return api.make_options(args.spec, getattr(args, "out", None), **_spec_arguments(args))


def _warn(messages: List[str]) -> None:
    maestrowf.warn(messages)


def _compile(args: argparse.Namespace) -> api.Study:
    with Progress("writing node scripts") as progress:
        study = api.compile(args.spec, args.out, progress=progress, **_spec_arguments(args))
    for note in study.notes:
        print(note)
    return study


def cmd_compile(args: argparse.Namespace) -> int:
    study = _compile(args)
    _warn(study.warnings)
    print(f"compiled {study.node_count} node(s) from {len(study.steps)} step(s) for the "
          f"{study.backend} backend into {study.path}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    problems = api.validate(args.spec, **_spec_arguments(args))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return SpecError.exit_code
    _warn(problems.warnings)
    print(f"{args.spec}: valid: {problems.step_count} step(s), {problems.node_count} node(s), "
          f"backend {problems.backend}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    print(api.open(args.study_dir).submit(args.jobs))
    print(f"watch it with: maestro status {args.study_dir}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.watch is None:
        worst, _ = _show_status(args)
        return worst
    return _watch(args)


def _show_status(args: argparse.Namespace) -> Tuple[int, bool]:
    """Print what `maestro status` shows for every DIR; the exit code, and whether every study
    can no longer change."""
    documents, done = [], []

    def one(directory: Path) -> None:
        report = api.open(directory).report(args.step, args.state)
        done.append(report.finished)
        if args.csv == "-":
            sys.stdout.write(format_csv(report.nodes))
            return
        if args.csv:
            Path(args.csv).write_text(format_csv(report.nodes), encoding="utf-8")
        if args.json:
            documents.append(format_json(report))
        elif args.summary:
            print(format_summary(report.summary(), SUMMARY_LIMIT if args.limit is None else args.limit))
        else:
            print(maestrowf.format_layout(list(report.nodes), args.layout))
    worst = maestrowf.each_directory(args.study_dirs, one, heading=not (args.json or args.csv == "-"))
    if documents:   # one JSON value: the study's object, or an array of them for several directories
        print(documents[0] if len(args.study_dirs) == 1 else "[\n" + ",\n".join(documents) + "\n]")
    return worst, len(done) == len(args.study_dirs) and all(done)


CLEAR_SCREEN = "\x1b[H\x1b[2J"     # cursor home, erase the screen


def _watch(args: argparse.Namespace) -> int:
    """The status every --watch seconds until every study can no longer change (or one cannot be
    read): redrawn in place on a terminal, else printed again after a blank line."""
    terminal = sys.stdout.isatty()
    first = True
    try:
        while True:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):   # drawn at once
                worst, done = _show_status(args)
            if terminal:
                sys.stdout.write(f"{CLEAR_SCREEN}every {args.watch:g} s until the study can no longer change "
                                 f"(Ctrl-C to stop); {time.strftime('%H:%M:%S')}\n\n")
            elif not first:
                sys.stdout.write("\n")
            sys.stdout.write(out.getvalue())
            sys.stdout.flush()
            sys.stderr.write(err.getvalue())
            if done or worst:
                return worst
            first = False
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 130   # quietly: stopping a watch is how it is meant to end early


def cmd_cancel(args: argparse.Namespace) -> int:
    def one(directory: Path) -> None:
        print(api.open(directory).cancel())
    return maestrowf.each_directory(args.study_dirs, one)


def cmd_update(args: argparse.Namespace) -> int:
    positions = iter(range(len(args.study_dirs)))   # the directories come in order, repeats too

    def one(directory: Path) -> None:
        index = next(positions)
        outcome = update(StudyDir.open(directory), maestrowf.pick(args.throttle, index),
                         maestrowf.pick(args.rlimit, index), maestrowf.pick(args.sleep, index))
        for message in outcome.messages:
            print(message)
        for message in outcome.notes:
            maestrowf.note(message)
    return maestrowf.each_directory(args.study_dirs, one)


def cmd_run(args: argparse.Namespace) -> int:
    study = _compile(args)
    _warn(study.warnings)
    print(f"compiled {study.node_count} node(s) into {study.path}")
    if not maestrowf.launch(args, study.path, study.backend):
        return 0
    print(study.submit(args.jobs))
    if not args.wait:
        print(f"watch it with: maestro status {study.path}")
        return 0
    summary = study.wait(poll=args.poll)
    print(summary)
    if summary.succeeded:
        return 0
    return EXIT_CANCELLED if summary.cancelled else EXIT_FAILED_STEPS


def cmd_graph(args: argparse.Namespace) -> int:
    args.spec = args.target     # _options() reads the spec path from .spec
    text, warnings = draw_graph(args, _options)
    _warn(warnings)
    sys.stdout.write(text)
    return 0


def cmd_resubmit(args: argparse.Namespace) -> int:
    print(api.open(args.study_dir).resubmit(args.only, args.dry, args.jobs))
    if not args.dry:
        print(f"watch it with: maestro status {args.study_dir}")
    return 0


def _check_status_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.limit is not None and not args.summary:
        parser.error("status: --limit N goes with --summary")
    if args.summary and (args.json or args.csv == "-"):
        parser.error("status: --summary prints a table; --json and --csv - print data (the JSON has the counts): "
                     "choose one")
    if args.watch is not None and (args.json or args.csv):
        parser.error("status: --watch redraws the table or the summary for people; --json and --csv are for "
                     "programs, which can call `maestro status` when they need to")


COMMANDS = {"compile": cmd_compile, "validate": cmd_validate, "submit": cmd_submit,
            "status": cmd_status, "cancel": cmd_cancel, "run": cmd_run, "graph": cmd_graph,
            "resubmit": cmd_resubmit, "update": cmd_update}


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    log = maestrowf.LogFile(args.logpath, sys.argv[1:] if argv is None else argv)
    try:
        log.__enter__()
    except MaestroCompileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        maestrowf.resolve(args, parser)
        if args.command == "status":
            _check_status_options(args, parser)
        return COMMANDS[args.command](args)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return exc.exit_code
    except MaestroCompileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # the boundary: never a raw traceback unless asked for
        if args.debug:
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc}\n{REPORT}", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        log.__exit__()
