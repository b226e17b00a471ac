#!/bin/bash
#BSUB -J "run_simulation[1-3]"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o run_simulation.array.log
#BSUB -e run_simulation.array.log
# maestro_compile: job array for step 'run_simulation' of study 'size_sweep'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    run_simulation/SIZE.10/run_simulation_SIZE.10.lsf.sh
    run_simulation/SIZE.100/run_simulation_SIZE.100.lsf.sh
    run_simulation/SIZE.1000/run_simulation_SIZE.1000.lsf.sh
)
LOGS=(
    run_simulation/SIZE.10/run_simulation_SIZE.10
    run_simulation/SIZE.100/run_simulation_SIZE.100
    run_simulation/SIZE.1000/run_simulation_SIZE.1000
)
# LSF array indexes start at 1
index=${LSB_JOBINDEX:?this script runs as an element of an LSF job array}
(( index > 0 )) || { echo "LSB_JOBINDEX=$index: this script runs as an element of an LSF job array" >&2; exit 1; }
task=$(( index - 1 ))
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
