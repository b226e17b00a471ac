"""Command line: compile | validate | submit | status | cancel | run | graph | resubmit | update.
The one error boundary. maestrowf's own flags are accepted too (commands.py)."""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import List, Optional

from . import __version__
from . import commands as maestrowf
from .backends import BACKENDS, get_backend
from .compile import Options, check_study, compile_study
from .errors import EXIT_USAGE, MaestroCompileError, SpecError
from .expand import FLAT_LIMIT, LAYOUTS, SHARD_SIZE
from .graph import draw as draw_graph, target_positional as graph_positional
from .progress import Progress
from .resubmit import resubmit
from .states import State
from .status import collect, finished, format_csv, format_json, summary
from .studydir import StudyDir
from .submission import submit
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


def _options(args: argparse.Namespace) -> Options:
    return Options(spec_path=args.spec, out_dir=getattr(args, "out", None), backend=args.backend,
                   pgen=args.pgen, pargs=args.pargs, hashws=args.hashws, cartesian=args.cartesian,
                   strict=args.strict, throttle=args.throttle, max_array_size=args.max_array_size,
                   retries=args.retries, rlimit=args.rlimit, workspace_layout=args.workspace_layout,
                   bundle=args.bundle, max_queued=args.max_queued)


def _warn(messages: List[str]) -> None:
    maestrowf.warn(messages)


def _compile(args: argparse.Namespace):
    with Progress("writing node scripts") as progress:
        result = compile_study(_options(args), progress=progress)
    for note in result.notes:
        print(note)
    return result


def cmd_compile(args: argparse.Namespace) -> int:
    result = _compile(args)
    _warn(result.warnings)
    steps = len(result.study.used_parameters)
    print(f"compiled {len(result.study.nodes)} node(s) from {steps} step(s) for the "
          f"{result.study.backend} backend into {result.directory}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    study = check_study(_options(args))
    _warn(list(study.warnings))
    print(f"{args.spec}: valid: {len(study.used_parameters)} step(s), {len(study.nodes)} node(s), "
          f"backend {study.backend}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    print(submit(StudyDir.open(args.study_dir), args.jobs))
    print(f"watch it with: maestro status {args.study_dir}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    documents = []

    def one(directory: Path) -> None:
        study = StudyDir.open(directory)
        rows, runtime = collect(study)
        if args.csv == "-":
            sys.stdout.write(format_csv(rows))
            return
        if args.csv:
            Path(args.csv).write_text(format_csv(rows), encoding="utf-8")
        if args.json:
            documents.append(format_json(rows, runtime, study))
        else:
            print(maestrowf.format_layout(rows, args.layout))
    worst = maestrowf.each_directory(args.study_dirs, one, heading=not (args.json or args.csv == "-"))
    if documents:   # one JSON value: the study's object, or an array of them for several directories
        print(documents[0] if len(args.study_dirs) == 1 else "[\n" + ",\n".join(documents) + "\n]")
    return worst


def cmd_cancel(args: argparse.Namespace) -> int:
    def one(directory: Path) -> None:
        study = StudyDir.open(directory)
        print(get_backend(study.manifest.backend).cancel(study))
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
    result = _compile(args)
    _warn(result.warnings)
    print(f"compiled {len(result.study.nodes)} node(s) into {result.directory}")
    study = StudyDir.open(result.directory)
    backend = get_backend(study.manifest.backend)
    if not maestrowf.launch(args, result.directory, study.manifest.backend):
        return 0
    print(submit(study, args.jobs))
    if not args.wait:
        print(f"watch it with: maestro status {result.directory}")
        return 0
    while True:
        rows, runtime = collect(study, backend)
        if finished(rows, runtime):
            break
        time.sleep(max(args.poll, 0.05))
    print(summary(rows))
    if all(row.state == State.FINISHED for row in rows):
        return 0
    return EXIT_CANCELLED if runtime.cancelled else EXIT_FAILED_STEPS


def cmd_graph(args: argparse.Namespace) -> int:
    args.spec = args.target     # _options() reads the spec path from .spec
    text, warnings = draw_graph(args, _options)
    _warn(warnings)
    sys.stdout.write(text)
    return 0


def cmd_resubmit(args: argparse.Namespace) -> int:
    print(resubmit(args.study_dir, args.only, args.dry, args.jobs))
    if not args.dry:
        print(f"watch it with: maestro status {args.study_dir}")
    return 0


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
