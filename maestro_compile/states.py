"""The run-time vocabulary: node states, the state sets every command agrees on, and the typed
records that flow from a backend's parsers to `maestro status`."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, Mapping, NamedTuple, Optional, Tuple, Union

from .errors import UsageError


class State(str, enum.Enum):
    """A node's state as `maestro status` shows it (Maestro's names, plus a few of the schedulers')."""

    INITIALIZED = "INITIALIZED"      # compiled, not submitted (or not in the ledger)
    PENDING = "PENDING"              # queued: held, waiting for parents or for resources
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    FINISHED = "FINISHED"            # exit code 0
    FAILED = "FAILED"
    TIMEDOUT = "TIMEDOUT"
    CANCELLED = "CANCELLED"          # by the user, or because an ancestor failed
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    UNKNOWN = "UNKNOWN"              # neither the scheduler nor the markers can tell

    def __str__(self) -> str:        # the name people and JSON see, on every Python version
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


# Nothing more will happen to a node in one of these states (`run --wait` stops when all are).
# PREEMPTED is final for a job the scheduler did not requeue (a requeued one shows PENDING).
TERMINAL: FrozenSet[State] = frozenset({State.FINISHED, State.FAILED, State.TIMEDOUT, State.CANCELLED,
                                        State.OUT_OF_MEMORY, State.NODE_FAIL, State.PREEMPTED, State.UNKNOWN})
# A node in one of these states is run again by `maestro resubmit` (with its descendants).
RERUN: FrozenSet[State] = frozenset({State.FAILED, State.TIMEDOUT, State.CANCELLED, State.OUT_OF_MEMORY,
                                     State.NODE_FAIL, State.PREEMPTED, State.UNKNOWN})
# The node's job has ended, one way or another.
ENDED: FrozenSet[State] = TERMINAL | RERUN
# An ancestor in one of these states explains why a descendant was cancelled.
ANCESTOR_FAILURES: FrozenSet[State] = frozenset({State.FAILED, State.TIMEDOUT, State.OUT_OF_MEMORY,
                                                 State.NODE_FAIL})
# The job is in the scheduler's queue (or the runner's), waiting or running.
ACTIVE: FrozenSet[State] = frozenset({State.PENDING, State.RUNNING, State.SUSPENDED})


def parse_state(value: Union[State, str]) -> State:
    """The State named ``value`` (any case); any other name is a UsageError listing the states."""
    if isinstance(value, State):
        return value
    try:
        return State(str(value).strip().upper())
    except ValueError:
        raise UsageError(f"unknown state {str(value)!r}: expected one of {', '.join(State)} (in any case)") from None


def parse_states(values: Union[State, str, Iterable[Union[State, str]]]) -> FrozenSet[State]:
    """A state name, or several."""
    if isinstance(values, str):     # a State is a str too
        values = [values]
    return frozenset(parse_state(value) for value in values)


def state_of(text: str) -> State:
    """The State called ``text`` (case-insensitive); UNKNOWN for any other text."""
    try:
        return State(str(text).strip().upper())
    except ValueError:
        return State.UNKNOWN


class NativeStatus(NamedTuple):
    """What a scheduler's query says about one job, as the backend's parser read it."""

    state: str              # the scheduler's own word: "CANCELLED by 0", "EXIT", "COMPLETED", ...
    reason: str = ""        # pending reason, exit reason, exception note
    exit_code: str = ""     # as printed ("1:0" on Slurm), empty when unknown


@dataclass(frozen=True)
class Markers:
    """What a node's job wrote into its .status file (KEY=VALUE lines), read for the latest attempt."""

    values: Mapping[str, str]
    starts: int = 0         # START lines plus in-job RESTART lines: attempts within the job

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return self.values.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __getitem__(self, key: str) -> str:
        return self.values[key]

    def outcome(self) -> Optional["Verdict"]:
        """The node's state from its markers alone: ended (exit code), running (started), or None."""
        if "EXIT_CODE" in self.values:
            if self.values["EXIT_CODE"] == "0":
                return Verdict(State.FINISHED)
            if "TIMEOUT" in self.values:
                return Verdict(State.TIMEDOUT, f"timed out after {self.values.get('RESTART', '0')} restart(s)")
            return Verdict(State.FAILED, f"exit code {self.values['EXIT_CODE']}")
        if "START" in self.values:
            return Verdict(State.RUNNING)
        return None


NO_MARKERS = Markers({}, 0)


@dataclass(frozen=True)
class Verdict:
    """A node's state and, when it helps, why."""

    state: State
    reason: str = ""


@dataclass(frozen=True)
class LedgerEntry:
    """A node's latest line in jobs.tsv and how many times it was submitted."""

    submitted_at: float
    job_id: str
    submissions: int = 1


@dataclass
class Runtime:
    """What the scheduler (or the local runner) knows about a study beyond its marker files.

    Built by the run-time layer once per `maestro status`; backends read it to judge each node."""

    submitted_at: Optional[float] = None            # None: not submitted
    cancelled: bool = False                          # `maestro cancel` ran
    interrupted: bool = False                        # the submission stopped before it was complete
    jobs: Dict[str, Optional[NativeStatus]] = None   # node -> what the scheduler said (None: it forgot)
    parents: Mapping[str, tuple] = None              # node -> parent nodes
    shown: Dict[str, State] = None                   # states decided so far (parents first)
    bundled: FrozenSet[str] = frozenset()            # nodes run inside bundles (judged by their markers)
    # the local runner
    runner_pid: Optional[int] = None
    runner_alive: bool = False
    runner_done: Optional[str] = None
    runner_leftovers: Tuple[int, ...] = ()           # processes of a killed runner's group still alive
    runner_nodes: Optional[FrozenSet[str]] = None    # after a resubmit: the nodes the latest runner runs
    cancelled_before: bool = False                   # an earlier run (before a resubmit) was cancelled

    def __post_init__(self) -> None:
        self.jobs = {} if self.jobs is None else self.jobs
        self.parents = {} if self.parents is None else self.parents
        self.shown = {} if self.shown is None else self.shown

    @property
    def submitted(self) -> bool:
        return self.submitted_at is not None
