"""`maestro status`: every node's state, rebuilt from its marker files, the ledger and what the
backend's scheduler (or the local runner) says. Reads the study directory through `studydir`."""
from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Dict, FrozenSet, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from .errors import UsageError
from .states import RERUN, TERMINAL, Runtime, State, parse_states
from .studydir import StudyDir


def _tabulate(*args, **kwargs) -> str:
    from tabulate import tabulate   # imported here: at the top it would cost every command (compile too) 35 ms
    return tabulate(*args, **kwargs)


COLUMNS = ["Step Name", "Job ID", "Workspace", "State", "Run Time", "Elapsed Time", "Start Time",
           "Submit Time", "End Time", "Number Restarts"]
JSON_SCHEMA = 1     # version of `status --json`'s layout (docs/cli.md); bumped on incompatible changes


class NodeStatus(NamedTuple):
    """One node as `maestro status` reports it (and the Python API's Study.status() returns)."""

    name: str
    step: str
    relative_workspace: str         # as in study.json: relative to the study directory
    state: State = State.INITIALIZED
    reason: str = ""
    job_id: Optional[str] = None
    submit: Optional[float] = None  # epoch seconds
    start: Optional[float] = None
    end: Optional[float] = None
    exit_code: Optional[int] = None
    restarts: int = 0
    params: Mapping[str, str] = MappingProxyType({})
    study_dir: str = ""             # absolute; "" when the record was built without a study

    @property
    def workspace(self) -> Path:
        """The node's workspace, absolute (built when asked: a 30,000-node status makes none)."""
        return Path(self.study_dir, self.relative_workspace)


def open_study(study: Union[StudyDir, Path, str]) -> StudyDir:
    return study if isinstance(study, StudyDir) else StudyDir.open(Path(study))


def collect(study: Union[StudyDir, Path, str], backend=None) -> Tuple[List[NodeStatus], Runtime]:
    """Every node's status, in the manifest's (topological) order, and the backend's runtime facts.
    The backend defaults to the manifest's."""
    study = open_study(study)
    if backend is None:
        from .backends import get_backend   # here: the backends import this module's neighbours
        backend = get_backend(study.manifest.backend)
    ledger = study.ledger(backend.job_id)
    runtime = backend.runtime(study, ledger)
    rows = []
    # states decided so far: parents come first (topological order), so a node's reason can
    # name a failed ancestor even when the scheduler's accounting has not recorded the failure yet
    root = str(study.path)
    for name, info in study.manifest.nodes.items():
        markers = study.markers(info)
        entry = ledger.get(name)
        submit, job_id, restarts = None, None, 0
        if entry is not None:
            submit, job_id = entry.submitted_at, entry.job_id
            # resubmissions (ledger lines) plus the restarts inside the latest attempt: its markers
            # start clean, `maestro resubmit` moves the previous attempt's aside
            restarts = entry.submissions - 1 + max(markers.starts, 1) - 1
        verdict = backend.judge(name, markers, entry is not None, runtime)
        runtime.shown[name] = verdict.state
        rows.append(NodeStatus(name=name, step=info.step, relative_workspace=info.workspace, state=verdict.state,
                               reason=verdict.reason, job_id=markers.get("JOB_ID", job_id), submit=submit,
                               start=_number(markers.get("START")), end=_number(markers.get("END")),
                               exit_code=_integer(markers.get("EXIT_CODE")), restarts=restarts,
                               params=dict(info.params), study_dir=root))
    return rows, runtime


def _number(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _integer(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _clock(epoch: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "--"


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "--:--:--"
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}d:{hours:02d}h:{minutes:02d}m:{secs:02d}s"


def _times(row: NodeStatus, now: float) -> Tuple[Optional[float], Optional[float]]:
    """(run time, elapsed time): start->end and submit->end, up to now while unfinished."""
    finish = row.end or (now if row.state == "RUNNING" else None)
    run = finish - row.start if row.start and finish else None
    elapsed_end = row.end or (now if row.state in ("RUNNING", "PENDING") else None)
    elapsed = elapsed_end - row.submit if row.submit and elapsed_end else None
    return run, elapsed


def table_rows(rows: List[NodeStatus], now: Optional[float] = None) -> List[List[str]]:
    now = now or time.time()
    result = []
    for row in rows:
        run, elapsed = _times(row, now)
        result.append([row.name, row.job_id or "--", row.relative_workspace, str(row.state), _duration(run), _duration(elapsed),
                       _clock(row.start), _clock(row.submit), _clock(row.end), str(row.restarts)])
    return result


def _counts(rows: Iterable[NodeStatus]) -> Dict[State, int]:
    counts: Dict[State, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def summary(rows: Sequence[NodeStatus]) -> str:
    """One line: `8 node(s): 6 FINISHED, 2 CANCELLED` (the most frequent state first)."""
    return _count_line(_counts(rows), len(rows))


def _count_line(counts: Mapping[State, int], total: int) -> str:
    parts = ", ".join(f"{count} {state}" for state, count in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{total} node(s): {parts}"


def format_table(rows: List[NodeStatus]) -> str:
    data = table_rows(rows)
    headers = list(COLUMNS)
    if any(row.reason for row in rows):
        headers.append("Reason")
        for line, row in zip(data, rows):
            line.append(row.reason)
    return _simple_table(data, headers) + "\n\n" + summary(rows)


FAST_TABLE_FROM = 2000   # rows; tabulate inspects every cell (~40 µs a row), too slow for 30,000


def _simple_table(data: List[List[str]], headers: List[str]) -> str:
    """tabulate's "simple" layout. Big all-ASCII tables get the same text from one pass over the
    column widths (tests compare the two), so status on a 30,000-node study stays quick."""
    if len(data) < FAST_TABLE_FROM or not all("".join(line).isascii() for line in data):
        return _tabulate(data, headers=headers, tablefmt="simple", disable_numparse=True)
    data = [[cell.strip() for cell in line] for line in data]   # as tabulate does (not the headers)
    widths = [len(header) + 2 for header in headers]   # tabulate's minimum padding of a header
    for line in data:
        widths = [max(width, len(cell)) for width, cell in zip(widths, line)]

    def text(cells: List[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
    return "\n".join([text(headers), "  ".join("-" * width for width in widths)] + [text(line) for line in data])


def format_json(report: "Report") -> str:
    """`status --json`: a stable, documented layout (docs/cli.md) for scripts to read. Its nodes
    and counts are the report's (filtered) nodes; submitted, cancelled and finished are the study's."""
    now = time.time()
    nodes = []
    for row in report.nodes:
        run, elapsed = _times(row, now)
        nodes.append({"name": row.name, "step": row.step, "state": str(row.state), "reason": row.reason,
                      "job_id": row.job_id, "workspace": os.path.join(str(report.directory), row.relative_workspace),
                      "params": dict(row.params), "submit_time": row.submit, "start_time": row.start,
                      "end_time": row.end, "run_seconds": run, "elapsed_seconds": elapsed,
                      "restarts": row.restarts, "exit_code": row.exit_code})
    document = {"schema": JSON_SCHEMA, "study": report.study, "backend": report.backend,
                "directory": str(report.directory), "submitted": report.submitted, "cancelled": report.cancelled,
                "interrupted": report.interrupted, "finished": report.finished,
                "counts": {str(k): v for k, v in _counts(report.nodes).items()}, "nodes": nodes}
    return json.dumps(document, indent=1)


def format_csv(rows: List[NodeStatus]) -> str:
    """Maestro's status.csv: its columns plus Params as k:v;k:v."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + ["Params"])
    for row, cells in zip(rows, table_rows(rows)):
        writer.writerow(cells + [";".join(f"{k}:{v}" for k, v in row.params.items())])
    return out.getvalue()


def finished(rows: List[NodeStatus], runtime: Runtime) -> bool:
    """True when nothing more will happen to the study. A local runner that is still alive after its
    last node ended is still writing its records: a resubmission now would refuse, so not yet."""
    if runtime.runner_done:
        return True
    return all(row.state in TERMINAL for row in rows) and not runtime.runner_alive


# ------------------------------------------------------------------------------------------
# one reading of a study, filtered; its summary (`status --summary`, the API's Study.summary())
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    """One reading of a study's status: the nodes asked for, and what holds for the whole study."""

    study: str                      # the study's name
    backend: str
    directory: Path                 # absolute
    nodes: Tuple[NodeStatus, ...]   # the selected nodes, parents before children
    submitted: bool
    cancelled: bool                 # `maestro cancel` ran (and no resubmission since)
    interrupted: bool               # a submission stopped before it was complete
    finished: bool                  # nothing more will happen to any node of the study

    def summary(self) -> "Summary":
        return summarize(self.nodes, self.finished, self.cancelled)


def read(study: Union[StudyDir, Path, str], steps: Iterable[str] = (), states: Iterable[Union[State, str]] = (),
         backend=None) -> Report:
    """The study's status now (one scheduler query), keeping the nodes of ``steps`` in ``states``
    (every node when empty). An unknown step or state is a UsageError."""
    study = open_study(study)
    rows, runtime = collect(study, backend)
    return make_report(study, rows, runtime, steps, states)


def make_report(study: StudyDir, rows: Sequence[NodeStatus], runtime: Runtime, steps: Iterable[str] = (),
                states: Iterable[Union[State, str]] = ()) -> Report:
    """The Report of rows and runtime that collect() returned."""
    return Report(study=study.manifest.name, backend=study.manifest.backend, directory=study.path,
                  nodes=tuple(select(rows, list(study.manifest.steps), steps, states)),
                  submitted=runtime.submitted, cancelled=runtime.cancelled, interrupted=runtime.interrupted,
                  finished=finished(rows, runtime))


def select(rows: Sequence[NodeStatus], known_steps: Sequence[str], steps: Iterable[str] = (),
           states: Iterable[Union[State, str]] = ()) -> List[NodeStatus]:
    """The rows of the given steps and states (all of them when a filter is empty)."""
    wanted_steps = _steps(known_steps, steps)
    wanted_states = parse_states(states)
    return [row for row in rows if (not wanted_steps or row.step in wanted_steps)
            and (not wanted_states or row.state in wanted_states)]


def _steps(known: Sequence[str], steps: Iterable[str]) -> FrozenSet[str]:
    chosen = frozenset([steps] if isinstance(steps, str) else steps)
    unknown = sorted(chosen - set(known))
    if unknown:
        raise UsageError(f"no step {', '.join(map(repr, unknown))} in this study; its steps: {', '.join(known)}")
    return chosen


@dataclass(frozen=True)
class Summary:
    """Counts per step and state; ``str()`` of it is the one-line summary of `maestro status`."""

    counts: Mapping[State, int]                    # state -> nodes, over every step
    steps: Mapping[str, Mapping[State, int]]       # step -> state -> nodes, steps in the study's order
    failed: Mapping[str, Tuple[NodeStatus, ...]]   # step -> its nodes that did not finish and will not
                                                   # run again by themselves (the RERUN states: failed,
                                                   # timed out, cancelled, ...), only steps that have some
    finished: bool                                 # nothing more will happen to the study
    cancelled: bool                                # the study was cancelled

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def succeeded(self) -> bool:
        """Every node counted is FINISHED."""
        return self.counts.get(State.FINISHED, 0) == self.total

    def __str__(self) -> str:
        return _count_line(self.counts, self.total)


def summarize(rows: Sequence[NodeStatus], finished: bool, cancelled: bool = False) -> Summary:
    steps: Dict[str, Dict[State, int]] = {}
    failed: Dict[str, List[NodeStatus]] = {}
    for row in rows:
        counts = steps.setdefault(row.step, {})
        counts[row.state] = counts.get(row.state, 0) + 1
        if row.state in RERUN:
            failed.setdefault(row.step, []).append(row)
    return Summary(counts=_counts(rows), steps=steps, failed={step: tuple(nodes) for step, nodes in failed.items()},
                   finished=finished, cancelled=cancelled)


SUMMARY_LIMIT = 10    # `status --summary`: failed nodes listed per step


def format_summary(summary: Summary, limit: int = SUMMARY_LIMIT) -> str:
    """`status --summary`: a table of counts (a row per step, a column per state that occurs),
    the one-line summary, then per step its first ``limit`` nodes that did not finish, with why."""
    states = [state for state in State if state in summary.counts]
    data = [[step, sum(counts.values())] + [counts.get(state, 0) for state in states]
            for step, counts in summary.steps.items()]
    parts = [_tabulate(data, headers=["Step", "Nodes"] + [str(state) for state in states], tablefmt="simple")
             if data else "no node matches", str(summary)]
    for step, nodes in summary.failed.items():
        if limit <= 0:
            break
        lines = [[node.name, str(node.state), node.reason] for node in nodes[:limit]]
        text = _tabulate(lines, tablefmt="plain", disable_numparse=True)
        more = f"\n  ... and {len(nodes) - limit} more" if len(nodes) > limit else ""
        parts.append(f"{step}: {len(nodes)} node(s) did not finish\n" + _indent(text) + more)
    return "\n\n".join(parts)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
