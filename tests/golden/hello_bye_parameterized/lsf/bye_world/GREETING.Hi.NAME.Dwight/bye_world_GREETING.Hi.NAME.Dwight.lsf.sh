#!/bin/bash
#BSUB -J "bye_world_GREETING.Hi.NAME.Dwight"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o bye_world_GREETING.Hi.NAME.Dwight.out
#BSUB -e bye_world_GREETING.Hi.NAME.Dwight.err
# maestro_compile: step 'bye_world' of study 'hello_bye_world'
# node: bye_world_GREETING.Hi.NAME.Dwight
# Submit it by hand with:  bsub -cwd @STUDY@/bye_world/GREETING.Hi.NAME.Dwight < ./bye_world_GREETING.Hi.NAME.Dwight.lsf.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE=@STUDY@/bye_world/GREETING.Hi.NAME.Dwight/bye_world_GREETING.Hi.NAME.Dwight.status
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
cd @STUDY@/bye_world/GREETING.Hi.NAME.Dwight || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
echo "Bye, World!" > bye.txt
)
