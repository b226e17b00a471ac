#!/bin/bash
#BSUB -J "compress[1-2]"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o compress.array.log
#BSUB -e compress.array.log
# maestro_compile: job array for step 'compress' of study 'build_archive'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    compress/COPT.--fast/compress_COPT.--fast.lsf.sh
    compress/COPT.--best/compress_COPT.--best.lsf.sh
)
LOGS=(
    compress/COPT.--fast/compress_COPT.--fast
    compress/COPT.--best/compress_COPT.--best
)
# LSF array indexes start at 1
index=${LSB_JOBINDEX:?this script runs as an element of an LSF job array}
(( index > 0 )) || { echo "LSB_JOBINDEX=$index: this script runs as an element of an LSF job array" >&2; exit 1; }
task=$(( index - 1 ))
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
