"""The sweep the benchmarks measure: three steps over X (simulate -> post -> check) and a funnel
(summarize), 3 * points + 1 nodes, the shape of the issues' 1,000- and 10,000-point sweeps."""
from __future__ import annotations


def sweep_spec(points: int, name: str, batch: str, walltime: str = "") -> str:
    """The spec as YAML text; ``batch`` is the batch block as a YAML flow mapping, ``walltime``
    (if any) is given to every step."""
    limit = f", walltime: '{walltime}'" if walltime else ""
    values = ", ".join(str(i) for i in range(points))
    return f"""\
description: {{name: {name}, description: a {points}-point sweep with a funnel}}
batch: {batch}
study:
  - name: simulate
    description: simulate one point
    run: {{cmd: 'echo $(X) > out.txt'{limit}}}
  - name: post
    description: post-process one point
    run: {{cmd: 'cat $(simulate.workspace)/out.txt', depends: [simulate]{limit}}}
  - name: check
    description: check one point
    run: {{cmd: 'true', depends: [post]{limit}}}
  - name: summarize
    description: the funnel
    run: {{cmd: 'true', depends: [check_*]{limit}}}
global.parameters:
  X:
    values: [{values}]
    label: X.%%
"""
