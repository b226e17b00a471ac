#!/bin/bash
#PBS -N mc_say_hi_NAME.Michael
#PBS -P maestro_compile_@STUDYID@
#PBS -o say_hi_NAME.Michael.out
#PBS -e say_hi_NAME.Michael.err
# maestro_compile: step 'say_hi' of study 'hello_world_single'
# node: say_hi_NAME.Michael
# Submit it by hand with:  cd @STUDY@/say_hi/NAME.Michael && qsub ./say_hi_NAME.Michael.pbs.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE=@STUDY@/say_hi/NAME.Michael/say_hi_NAME.Michael.status
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
_mc_mark JOB_ID "${PBS_JOBID:-$$}"
trap _mc_finish EXIT
trap '_mc_mark SIGNAL TERM; exit 143' TERM
trap '_mc_mark SIGNAL INT; exit 130' INT
cd @STUDY@/say_hi/NAME.Michael || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
echo "Hello, Michael!" > hello_Michael.txt
)
