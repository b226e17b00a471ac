"""`maestro status`: rebuild every node's state from marker files, the ledger and the backend."""
from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from tabulate import tabulate

from .errors import StudyDirError

COLUMNS = ["Step Name", "Job ID", "Workspace", "State", "Run Time", "Elapsed Time", "Start Time",
           "Submit Time", "End Time", "Number Restarts"]
TERMINAL = {"FINISHED", "FAILED", "TIMEDOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "UNKNOWN"}


@dataclass
class NodeStatus:
    name: str
    step: str
    workspace: str
    state: str = "INITIALIZED"
    reason: str = ""
    job_id: Optional[str] = None
    submit: Optional[float] = None
    start: Optional[float] = None
    end: Optional[float] = None
    exit_code: Optional[int] = None
    restarts: int = 0
    params: Dict[str, str] = field(default_factory=dict)


def load_manifest(study_dir: Path) -> Dict[str, Any]:
    path = Path(study_dir) / "study.json"
    if not Path(study_dir).is_dir():
        raise StudyDirError(f"{study_dir}: no such directory")
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise StudyDirError(f"{study_dir} is not a study directory (no study.json); "
                            f"create one with `maestro compile SPEC`") from None
    except (OSError, ValueError) as exc:
        raise StudyDirError(f"{path}: cannot read the study manifest: {exc}") from None
    if manifest.get("format") != 1 or "nodes" not in manifest:
        raise StudyDirError(f"{path}: not a study manifest this version understands (format "
                            f"{manifest.get('format')!r}, expected 1)")
    return manifest


def read_markers(path: Path) -> Dict[str, str]:
    """The KEY=VALUE lines a job appended; later lines win, START is counted (attempts)."""
    markers: Dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, sep, value = line.rstrip("\n").partition("=")
                if sep:
                    if key == "START":
                        markers["STARTS"] = str(int(markers.get("STARTS", "0")) + 1)
                        for stale in ("END", "EXIT_CODE", "SIGNAL", "REQUEUE"):
                            markers.pop(stale, None)
                    if key == "RESTART":   # a restart run inside the same job (Flux)
                        markers["STARTS"] = str(int(markers.get("STARTS", "0")) + 1)
                    markers[key] = value
    except OSError:
        pass
    return markers


def read_ledger(study_dir: Path) -> Dict[str, Tuple[float, str, int]]:
    """node -> (submit time, latest job id, number of submissions) from jobs.tsv."""
    entries: Dict[str, Tuple[float, str, int]] = {}
    try:
        with open(study_dir / "jobs.tsv", encoding="utf-8") as handle:
            for line in handle:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 3:
                    previous = entries.get(parts[1])
                    entries[parts[1]] = (float(parts[0]), parts[2], previous[2] + 1 if previous else 1)
    except (OSError, ValueError):
        pass
    return entries


def collect(study_dir: Path, backend=None,
            manifest: Optional[Mapping[str, Any]] = None) -> Tuple[List[NodeStatus], Dict[str, Any]]:
    """Every node's status, in the manifest's (topological) order, and the backend's runtime facts.
    The backend defaults to the manifest's; pass a manifest already read to spare reading it again."""
    study_dir = Path(study_dir).resolve()
    manifest = manifest or load_manifest(study_dir)
    if backend is None:
        from .backends import get_backend   # here: the backends import this module
        backend = get_backend(manifest["backend"])
    runtime = backend.runtime_state(study_dir, manifest)
    ledger = read_ledger(study_dir)
    rows = []
    root = str(study_dir)
    # the states found so far: parents come first (topological order), so a node's reason can
    # name a failed ancestor even when the scheduler's accounting has not recorded the failure yet
    states: Dict[str, str] = runtime.setdefault("states", {})
    for name, info in manifest["nodes"].items():
        markers = read_markers(os.path.join(root, info["log"] + ".status"))
        row = NodeStatus(name=name, step=info["step"], workspace=info["workspace"], params=dict(info["params"]))
        if name in ledger:
            row.submit, row.job_id, submissions = ledger[name]
            # resubmissions (ledger lines) plus the restarts inside the latest attempt: its markers
            # start clean, `maestro resubmit` moves the previous attempt's aside
            row.restarts = submissions - 1 + max(int(markers.get("STARTS", "1")), 1) - 1
        row.job_id = markers.get("JOB_ID", row.job_id)
        row.start = _number(markers.get("START"))
        row.end = _number(markers.get("END"))
        if "EXIT_CODE" in markers:
            row.exit_code = int(markers["EXIT_CODE"])
        row.state, row.reason = backend.node_state(name, markers, name in ledger, runtime)
        states[name] = row.state
        rows.append(row)
    del runtime["states"]   # only for the loop; not part of what status reports
    return rows, runtime


def _number(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text else None
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
        result.append([row.name, row.job_id or "--", row.workspace, row.state, _duration(run), _duration(elapsed),
                       _clock(row.start), _clock(row.submit), _clock(row.end), str(row.restarts)])
    return result


def _counts(rows: List[NodeStatus]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
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
        return tabulate(data, headers=headers, tablefmt="simple", disable_numparse=True)
    data = [[cell.strip() for cell in line] for line in data]   # as tabulate does (not the headers)
    widths = [len(header) + 2 for header in headers]   # tabulate's minimum padding of a header
    for line in data:
        widths = [max(width, len(cell)) for width, cell in zip(widths, line)]

    def text(cells: List[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
    return "\n".join([text(headers), "  ".join("-" * width for width in widths)] + [text(line) for line in data])


def format_json(rows: List[NodeStatus], runtime: Mapping[str, Any]) -> str:
    now = time.time()
    nodes = []
    for row, cells in zip(rows, table_rows(rows, now)):
        item = asdict(row)
        item.update({"run_time": cells[4], "elapsed_time": cells[5]})
        nodes.append(item)
    return json.dumps({"nodes": nodes, "counts": _counts(rows), "runtime": dict(runtime)}, indent=1, default=str)


def format_csv(rows: List[NodeStatus]) -> str:
    """Maestro's status.csv: its columns plus Params as k:v;k:v."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + ["Params"])
    for row, cells in zip(rows, table_rows(rows)):
        writer.writerow(cells + [";".join(f"{k}:{v}" for k, v in row.params.items())])
    return out.getvalue()


def finished(rows: List[NodeStatus], runtime: Mapping[str, Any]) -> bool:
    """True when nothing more will happen to the study."""
    return all(row.state in TERMINAL for row in rows) or bool(runtime.get("runner_done"))
