#!/bin/bash
#SBATCH --job-name="run_simulation"
#SBATCH --output=run_simulation.array.log
#SBATCH --open-mode=append
#SBATCH --comment="maestro_compile:@STUDYID@ Estimate the integral of x^2 over [0, 1] with $(SIZE) midpoints."
# maestro_compile: job array for step 'run_simulation' of study 'size_sweep'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    run_simulation/SIZE.10/run_simulation_SIZE.10.slurm.sh
    run_simulation/SIZE.100/run_simulation_SIZE.100.slurm.sh
    run_simulation/SIZE.1000/run_simulation_SIZE.1000.slurm.sh
)
LOGS=(
    run_simulation/SIZE.10/run_simulation_SIZE.10
    run_simulation/SIZE.100/run_simulation_SIZE.100
    run_simulation/SIZE.1000/run_simulation_SIZE.1000
)
task=${SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm job array}
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
