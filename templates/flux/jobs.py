"""maestro_compile: what `maestro status` asks a Flux instance, run as

    flux python jobs.py SINCE

with Flux's own interpreter and bindings. Prints, in the shape of `flux jobs -a -c 0 --json`,
{"jobs": [...]} with every job of the user that is active or became inactive after SINCE (epoch
seconds), with only the fields status reads (id, status, returncode, urgency, exception), from
one job-list request. (`flux jobs` itself builds every field of every job: seconds for tens of
thousands of jobs.) backends/flux.py parses the output like that of `flux jobs --json`.
"""
import json
import os
import sys

import flux
import flux.constants
from flux.job.info import statustostr

ATTRS = ["state", "result", "waitstatus", "urgency", "exception_occurred", "exception_type", "exception_note"]


def returncode(entry):
    """As `flux jobs` shows it: the exit code, -signal, -128 when cancelled before it ran, 1 when it
    failed before it ran; None while the job is active."""
    status = entry.get("waitstatus")
    if isinstance(status, int):
        if os.WIFSIGNALED(status):
            return -os.WTERMSIG(status)
        return os.WEXITSTATUS(status)
    if entry.get("result") == flux.constants.FLUX_JOB_RESULT_CANCELED:
        return -128
    if entry.get("result") == flux.constants.FLUX_JOB_RESULT_FAILED:
        return 1
    return None


def main(since):
    handle = flux.Flux()
    payload = {"max_entries": 0, "attrs": ATTRS, "since": since,
               "constraint": {"and": [{"userid": [os.getuid()]}]}}
    jobs = handle.rpc("job-list.list", payload).get()["jobs"]
    out = []
    for entry in jobs:
        # keys as in `flux jobs --json`; those status does not need left out when they say nothing:
        # urgency unless held (0), exception unless one occurred, returncode while active
        job = {"id": entry["id"], "status": statustostr(entry["state"], entry.get("result", 0))}
        if entry.get("urgency") == 0:
            job["urgency"] = 0
        code = returncode(entry)
        if code is not None:
            job["returncode"] = code
        if entry.get("exception_occurred"):
            job["exception"] = {"occurred": True, "type": entry.get("exception_type", ""),
                                "note": entry.get("exception_note", "")}
        out.append(job)
    # one write: json.dump would write the text in thousands of small pieces
    sys.stdout.write(json.dumps({"jobs": out}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: flux python jobs.py SINCE")
    try:
        main(float(sys.argv[1]))
    except (OSError, ValueError) as exc:
        sys.exit(f"jobs.py: {exc}")
