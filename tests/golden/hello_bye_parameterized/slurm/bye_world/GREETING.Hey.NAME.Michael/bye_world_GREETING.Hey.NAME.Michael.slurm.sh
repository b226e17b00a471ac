#!/bin/bash
#SBATCH --job-name="bye_world_GREETING.Hey.NAME.Michael"
#SBATCH --output=bye_world_GREETING.Hey.NAME.Michael.out
#SBATCH --error=bye_world_GREETING.Hey.NAME.Michael.err
#SBATCH --comment="maestro_compile:@STUDYID@ Say bye to someone!"
# maestro_compile: step 'bye_world' of study 'hello_bye_world'
# node: bye_world_GREETING.Hey.NAME.Michael
# Submit it by hand with:  sbatch -D @STUDY@/bye_world/GREETING.Hey.NAME.Michael ./bye_world_GREETING.Hey.NAME.Michael.slurm.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE=@STUDY@/bye_world/GREETING.Hey.NAME.Michael/bye_world_GREETING.Hey.NAME.Michael.status
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
_mc_mark JOB_ID "$([ -n "${SLURM_ARRAY_JOB_ID:-}" ] && echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" || echo "${SLURM_JOB_ID:-$$}")"
trap _mc_finish EXIT
trap '_mc_mark SIGNAL TERM; exit 143' TERM
trap '_mc_mark SIGNAL INT; exit 130' INT
cd @STUDY@/bye_world/GREETING.Hey.NAME.Michael || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
echo "Bye, World!" > bye.txt
)
