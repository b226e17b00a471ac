#!/bin/bash
#BSUB -J "sweep[1-3]"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o sweep.array.log
#BSUB -e sweep.array.log
#BSUB -n 2
#BSUB -q "pdebug"
#BSUB -G "physics"
#BSUB -W 00:10
#BSUB -U "dat_window"
# maestro_compile: job array for step 'sweep' of study 'resources'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    sweep/SIZE.8/sweep_SIZE.8.lsf.sh
    sweep/SIZE.16/sweep_SIZE.16.lsf.sh
    sweep/SIZE.32/sweep_SIZE.32.lsf.sh
)
LOGS=(
    sweep/SIZE.8/sweep_SIZE.8
    sweep/SIZE.16/sweep_SIZE.16
    sweep/SIZE.32/sweep_SIZE.32
)
# LSF array indexes start at 1
index=${LSB_JOBINDEX:?this script runs as an element of an LSF job array}
(( index > 0 )) || { echo "LSB_JOBINDEX=$index: this script runs as an element of an LSF job array" >&2; exit 1; }
task=$(( index - 1 ))
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
