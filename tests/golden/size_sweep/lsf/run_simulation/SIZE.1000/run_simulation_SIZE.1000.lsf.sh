#!/bin/bash
#BSUB -J "run_simulation_SIZE.1000"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o run_simulation_SIZE.1000.out
#BSUB -e run_simulation_SIZE.1000.err
# maestro_compile: step 'run_simulation' of study 'size_sweep'
# node: run_simulation_SIZE.1000
# Submit it by hand with:  bsub -cwd @STUDY@/run_simulation/SIZE.1000 < ./run_simulation_SIZE.1000.lsf.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE=@STUDY@/run_simulation/SIZE.1000/run_simulation_SIZE.1000.status
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
_mc_mark JOB_ID "$([ "${LSB_JOBINDEX:-0}" != 0 ] && echo "${LSB_JOBID}[${LSB_JOBINDEX}]" || echo "${LSB_JOBID:-$$}")"
trap _mc_finish EXIT
trap '_mc_mark SIGNAL TERM; exit 143' TERM
trap '_mc_mark SIGNAL INT; exit 130' INT
cd @STUDY@/run_simulation/SIZE.1000 || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
python3 @SPECDIR@/simulate.py --size 1000 --output result.json
)
