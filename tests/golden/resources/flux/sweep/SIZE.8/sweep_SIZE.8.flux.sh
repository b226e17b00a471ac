#!/bin/bash
# flux: --job-name=sweep_SIZE.8
# flux: --output=sweep_SIZE.8.out
# flux: --error=sweep_SIZE.8.err
# flux: -n 2
# flux: -t 600s
# flux: -q pdebug
# flux: --bank=physics
# maestro_compile: step 'sweep' of study 'resources'
# node: sweep_SIZE.8
# Submit it by hand with:  flux batch --cwd=@STUDY@/sweep/SIZE.8 ./sweep_SIZE.8.flux.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE=@STUDY@/sweep/SIZE.8/sweep_SIZE.8.status
_mc_mark() { printf '%s=%s\n' "$1" "$2" >> "$MAESTRO_STATUS_FILE"; }
_mc_finish() {
    local rc=$?
    trap - EXIT
    _mc_mark END "${EPOCHSECONDS:-$(date +%s)}"
    _mc_mark EXIT_CODE "$rc"
    exit "$rc"
}
_mc_mark START "${EPOCHSECONDS:-$(date +%s)}"
_mc_mark HOST "${HOSTNAME:-unknown}"
_mc_mark JOB_ID "${MAESTRO_BUNDLE_ID:-${FLUX_JOB_ID:-${FLUX_ENCLOSING_ID:-$$}}}"
trap _mc_finish EXIT
trap '_mc_mark SIGNAL TERM; exit 143' TERM
trap '_mc_mark SIGNAL INT; exit 130' INT
# Flux sends ALRM at the time limit (a node in a bundle: its bundle's); bash would run the EXIT trap
# with the last command's status
trap '_mc_mark SIGNAL ALRM; exit 142' ALRM
cd @STUDY@/sweep/SIZE.8 || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
flux run -n 2 @SPECDIR@/bin/app --size 8 > out_8.txt
)
