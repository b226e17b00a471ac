"""A step's ``walltime``: one meaning on every backend, read once, formatted per scheduler.

Maestro passes the text to each scheduler in its own way, so ``"05:30"`` is 5 min 30 s on Slurm
and 5 h 30 min on LSF. Here it is read once, when the study is expanded, with one set of rules
(``parse``); the backends only format the seconds (``slurm_time``, ``lsf_limit``,
``flux_duration``, ``pbs_walltime``). See docs/spec.md (``walltime``) and docs/compatibility.md.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any, Optional

UNLIMITED = ("inf", "infinity", "infinite", "unlimited")
EXPECTED = "expected HH:MM:SS, HH:MM, D-HH:MM:SS or minutes"
_MINUTES = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
# D-HH, D-HH:MM, D-HH:MM:SS, HH:MM, HH:MM:SS (a bare number is minutes, matched before this)
_CLOCK = re.compile(r"(?:([0-9]+)-)?([0-9]+)(?::([0-9]+))?(?::([0-9]+))?")


def parse(value: Any) -> Optional[int]:
    """Seconds of a walltime, or None for no limit.

    ``HH:MM:SS``, ``HH:MM`` (hours and minutes), ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``; an integer,
    a float or a numeric string is minutes (rounded up to whole seconds). Empty, absent, ``inf``,
    ``infinity``, ``infinite``, ``unlimited`` (any case) and a zero duration mean no limit (as
    ``sbatch --time=0``). Fields after the first are not range-checked: ``"00:90"`` is 90 minutes.
    Anything else raises ValueError.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise _unreadable(value)
    if isinstance(value, int):
        minutes = Fraction(value)
    elif isinstance(value, float):
        if math.isinf(value) and value > 0:
            return None
        if math.isnan(value) or math.isinf(value):
            raise _unreadable(value)
        minutes = Fraction(repr(value))   # the decimal written, not its binary approximation
    elif isinstance(value, str):
        text = value.strip()
        if not text or text.lower() in UNLIMITED:
            return None
        if _MINUTES.fullmatch(text):
            minutes = Fraction(text)
        else:
            match = _CLOCK.fullmatch(text)
            if not match:
                raise _unreadable(text)
            days, hours, mins, secs = (int(group) if group else 0 for group in match.groups())
            return ((days * 24 + hours) * 60 + mins) * 60 + secs or None
    else:
        raise _unreadable(value)
    if minutes < 0:
        raise _unreadable(value)
    return math.ceil(minutes * 60) or None


def _unreadable(value: Any) -> ValueError:
    return ValueError(f"cannot read {value!r} as a walltime ({EXPECTED})")


def slurm_time(seconds: int) -> str:
    """``sbatch --time``: ``HH:MM:SS``, or ``D-HH:MM:SS`` from one day on.

    sbatch(1) accepts "minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours",
    "days-hours:minutes" and "days-hours:minutes:seconds"; its resolution is one minute and Slurm
    rounds seconds up to the next minute.
    """
    # https://slurm.schedmd.com/sbatch.html#OPT_time
    days, rest = divmod(_whole(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def lsf_limit(seconds: int) -> str:
    """``bsub -W [hour:]minute``: the seconds rounded up to whole minutes, as ``HH:MM``.

    bsub(1): "The run limit is in the form of [hour:]minute. The minutes can be specified as a
    number greater than 59."; hours above 99 are written in full (``100:00``).
    """
    # https://www.ibm.com/docs/en/SSWRJV_10.1.0/lsf_command_ref/bsub.__w.1.html
    minutes = -(-_whole(seconds) // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def flux_duration(seconds: int) -> str:
    """A Flux Standard Duration (RFC 23) in seconds, e.g. ``5400s``, for ``flux batch -t``."""
    # https://flux-framework.readthedocs.io/projects/flux-rfc/en/latest/spec_23.html
    return f"{_whole(seconds)}s"


def pbs_walltime(seconds: int) -> str:
    """``qsub -l walltime=``: ``HH:MM:SS`` with as many hours as needed (PBS has no days field)."""
    # PBS Professional reference guide, "walltime": a duration, [[hours:]minutes:]seconds[.milliseconds]
    hours, rest = divmod(_whole(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def _whole(seconds: int) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"a walltime in seconds must be a whole number >= 0, not {seconds!r}")
    return seconds


__all__ = ["parse", "slurm_time", "lsf_limit", "flux_duration", "UNLIMITED", "EXPECTED"]
