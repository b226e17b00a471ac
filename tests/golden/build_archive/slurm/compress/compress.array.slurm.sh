#!/bin/bash
#SBATCH --job-name="compress"
#SBATCH --output=compress.array.log
#SBATCH --open-mode=append
#SBATCH --comment="maestro_compile:@STUDYID@ Compress the archive with gzip $(COPT)."
# maestro_compile: job array for step 'compress' of study 'build_archive'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    compress/COPT.--fast/compress_COPT.--fast.slurm.sh
    compress/COPT.--best/compress_COPT.--best.slurm.sh
)
LOGS=(
    compress/COPT.--fast/compress_COPT.--fast
    compress/COPT.--best/compress_COPT.--best
)
task=${SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm job array}
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
