"""`maestro status`: every node's state, rebuilt from its marker files, the ledger and what the
backend's scheduler (or the local runner) says. Reads the study directory through `studydir`."""
from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from .states import TERMINAL, Runtime, State
from .studydir import StudyDir

COLUMNS = ["Step Name", "Job ID", "Workspace", "State", "Run Time", "Elapsed Time", "Start Time",
           "Submit Time", "End Time", "Number Restarts"]
JSON_SCHEMA = 1     # version of `status --json`'s layout (docs/cli.md); bumped on incompatible changes


@dataclass
class NodeStatus:
    """One node as `maestro status` reports it."""

    name: str
    step: str
    workspace: str                  # relative to the study directory
    state: State = State.INITIALIZED
    reason: str = ""
    job_id: Optional[str] = None
    submit: Optional[float] = None  # epoch seconds
    start: Optional[float] = None
    end: Optional[float] = None
    exit_code: Optional[int] = None
    restarts: int = 0
    params: Dict[str, str] = field(default_factory=dict)


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
    for name, info in study.manifest.nodes.items():
        markers = study.markers(info)
        row = NodeStatus(name=name, step=info.step, workspace=info.workspace, params=dict(info.params))
        entry = ledger.get(name)
        if entry is not None:
            row.submit, row.job_id = entry.submitted_at, entry.job_id
            # resubmissions (ledger lines) plus the restarts inside the latest attempt: its markers
            # start clean, `maestro resubmit` moves the previous attempt's aside
            row.restarts = entry.submissions - 1 + max(markers.starts, 1) - 1
        row.job_id = markers.get("JOB_ID", row.job_id)
        row.start = _number(markers.get("START"))
        row.end = _number(markers.get("END"))
        row.exit_code = _integer(markers.get("EXIT_CODE"))
        verdict = backend.judge(name, markers, entry is not None, runtime)
        row.state, row.reason = verdict.state, verdict.reason
        runtime.shown[name] = row.state
        rows.append(row)
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
        result.append([row.name, row.job_id or "--", row.workspace, str(row.state), _duration(run), _duration(elapsed),
                       _clock(row.start), _clock(row.submit), _clock(row.end), str(row.restarts)])
    return result


def _counts(rows: List[NodeStatus]) -> Dict[State, int]:
    counts: Dict[State, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def summary(rows: List[NodeStatus]) -> str:
    counts = _counts(rows)
    parts = ", ".join(f"{count} {state}" for state, count in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{len(rows)} node(s): {parts}"


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
        from tabulate import tabulate   # here: importing it costs every command (compile too) 35 ms
        return tabulate(data, headers=headers, tablefmt="simple", disable_numparse=True)
    data = [[cell.strip() for cell in line] for line in data]   # as tabulate does (not the headers)
    widths = [len(header) + 2 for header in headers]   # tabulate's minimum padding of a header
    for line in data:
        widths = [max(width, len(cell)) for width, cell in zip(widths, line)]

    def text(cells: List[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
    return "\n".join([text(headers), "  ".join("-" * width for width in widths)] + [text(line) for line in data])


def format_json(rows: List[NodeStatus], runtime: Runtime, study: StudyDir) -> str:
    """`status --json`: a stable, documented layout (docs/cli.md) for scripts to read."""
    now = time.time()
    nodes = []
    for row in rows:
        run, elapsed = _times(row, now)
        nodes.append({"name": row.name, "step": row.step, "state": str(row.state), "reason": row.reason,
                      "job_id": row.job_id, "workspace": os.path.join(str(study.path), row.workspace),
                      "params": row.params, "submit_time": row.submit, "start_time": row.start,
                      "end_time": row.end, "run_seconds": run, "elapsed_seconds": elapsed,
                      "restarts": row.restarts, "exit_code": row.exit_code})
    document = {"schema": JSON_SCHEMA, "study": study.manifest.name, "backend": study.manifest.backend,
                "directory": str(study.path), "submitted": runtime.submitted, "cancelled": runtime.cancelled,
                "interrupted": runtime.interrupted,
                "finished": finished(rows, runtime), "counts": {str(k): v for k, v in _counts(rows).items()},
                "nodes": nodes}
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
    """True when nothing more will happen to the study."""
    return all(row.state in TERMINAL for row in rows) or bool(runtime.runner_done)
