#!/bin/bash
# maestro_compile: runs study 'hello_world' on this machine, with no scheduler.
# Every step runs in dependency order, up to JOBS steps at a time; a failed step's descendants
# are not run. The runner is runner.py beside this script (Python 3.8 or later, its standard
# library only), which reads the plan from study.json.
#
#   ./submit.sh                start in the background (own session, survives logout), return
#   ./submit.sh --foreground   run here and wait until the study ends
#   ./submit.sh --jobs N       run at most N steps at once (default: number of cores)
#   ./submit.sh --nodes FILE   run again only the nodes named in FILE (one per line) of a study
#                              submitted before; every other node counts as done (maestro resubmit)
#
# Every step writes KEY=VALUE markers to <workspace>/<name>.status; `maestro status` reads them.
# MAESTRO_PYTHON names the Python to run the runner with (default: python3).
STUDY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${MAESTRO_PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null; then
    echo "submit.sh: the local runner needs Python 3.8 or later, and there is no '$PYTHON' here (set MAESTRO_PYTHON)" >&2
    exit 69
fi
exec "$PYTHON" "$STUDY_DIR/runner.py" "$@"
