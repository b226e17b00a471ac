#!/bin/bash
#SBATCH --job-name="sweep"
#SBATCH --output=sweep.array.log
#SBATCH --open-mode=append
#SBATCH --comment="maestro_compile:@STUDYID@ One array task per size $(SIZE)."
#SBATCH --ntasks=2
#SBATCH --partition="pdebug"
#SBATCH --account="physics"
#SBATCH --time=00:10:00
#SBATCH --reservation="dat_window"
# maestro_compile: job array for step 'sweep' of study 'resources'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    sweep/SIZE.8/sweep_SIZE.8.slurm.sh
    sweep/SIZE.16/sweep_SIZE.16.slurm.sh
    sweep/SIZE.32/sweep_SIZE.32.slurm.sh
)
LOGS=(
    sweep/SIZE.8/sweep_SIZE.8
    sweep/SIZE.16/sweep_SIZE.16
    sweep/SIZE.32/sweep_SIZE.32
)
task=${SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm job array}
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
