#!/bin/bash
#SBATCH --job-name="say it's \"loud\" $x ü"
#SBATCH --output=say_its_loud_x_.array.log
#SBATCH --open-mode=append
#SBATCH --comment="maestro_compile:@STUDYID@ Say $(WORD) with \"double\" and 'single' quotes, a \\ backslash and é"
# maestro_compile: job array for step 'say it's "loud" $x ü' of study 'hostile study: 'single' "double" $HOME \ é ü'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    'say it'"'"'s "loud" $x ü/Wtwo_words/say_its_loud_x__Wtwo_words.slurm.sh'
    'say it'"'"'s "loud" $x ü/Wits/say_its_loud_x__Wits.slurm.sh'
    'say it'"'"'s "loud" $x ü/Wsay_hi/say_its_loud_x__Wsay_hi.slurm.sh'
    'say it'"'"'s "loud" $x ü/Wcost_5/say_its_loud_x__Wcost_5.slurm.sh'
    'say it'"'"'s "loud" $x ü/Wbackslash/say_its_loud_x__Wbackslash.slurm.sh'
    'say it'"'"'s "loud" $x ü/Wnave_/say_its_loud_x__Wnave_.slurm.sh'
)
LOGS=(
    'say it'"'"'s "loud" $x ü/Wtwo_words/say_its_loud_x__Wtwo_words'
    'say it'"'"'s "loud" $x ü/Wits/say_its_loud_x__Wits'
    'say it'"'"'s "loud" $x ü/Wsay_hi/say_its_loud_x__Wsay_hi'
    'say it'"'"'s "loud" $x ü/Wcost_5/say_its_loud_x__Wcost_5'
    'say it'"'"'s "loud" $x ü/Wbackslash/say_its_loud_x__Wbackslash'
    'say it'"'"'s "loud" $x ü/Wnave_/say_its_loud_x__Wnave_'
)
task=${SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm job array}
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
