@a verbatim copy of templates/flux/submit.py@
