@a verbatim copy of templates/local/runner.py@
