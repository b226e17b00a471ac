"""The pipeline: load -> validate -> expand -> plan -> render -> emit."""
from __future__ import annotations

import datetime
import getpass
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from . import bundles, emit, plan, render, runner, schema, tokens
from .backends import get_backend
from .errors import CompileError, SpecError
from .expand import check_resources, expand, make_safe
from .load import RawSpec, load_spec
from .model import Parameter, Spec, Study, Warnings
from .parameters import cartesian as cartesian_product
from .parameters import from_spec_block
from .pgen import load_generator, parse_pargs


@dataclass
class Options:
    spec_path: Optional[Path]      # the spec file; None when raw_spec is given
    out_dir: Optional[Path] = None
    backend: Optional[str] = None
    pgen: Optional[Path] = None
    pargs: Sequence[str] = ()
    hashws: bool = False
    cartesian: bool = False
    strict: bool = False
    throttle: int = 0              # at most this many tasks of one array at once (%T)
    max_array_size: int = 0        # 0: ask the cluster (scontrol) or use the scheduler's default
    retries: int = 0               # rerun a failed step inside its job up to this many times
    rlimit: int = 1                # restarts on timeout for steps with `restart` (0: unlimited)
    workspace_layout: str = "auto"  # auto | flat | sharded (see expand.LAYOUTS)
    raw_spec: Optional[RawSpec] = None  # a spec already read (given in memory): used instead of spec_path
    bundle: int = 0                # nodes per job for every step (0/1: one job per node)
    max_queued: int = 0            # at most this many queued jobs (0: ask the cluster, else no limit)


@dataclass
class Result:
    study: Study
    directory: Path
    warnings: List[str]
    notes: List[str] = field(default_factory=list)   # what the compiler chose (bundles), for people


def default_directory(spec: Spec, now: datetime.datetime) -> Path:
    stamp = now.strftime("%Y%m%d-%H%M%S")
    return tokens.output_parent(spec) / make_safe(f"{spec.name.replace(' ', '_')}_{stamp}")


def build_study(options: Options, now: Optional[datetime.datetime] = None) -> Study:
    """Everything up to (not including) rendering: pure apart from reading the spec and pgen."""
    warnings = Warnings()
    raw = options.raw_spec or load_spec(options.spec_path)
    spec = schema.validate(raw, warnings, options.cartesian)
    backend_name = options.backend or str(spec.batch.get("type", "local"))
    try:
        backend = get_backend(backend_name)
    except CompileError as exc:
        if options.backend:
            raise
        raise CompileError(f"{spec.raw.where(('batch', 'type'))}: batch.type: {exc}") from None
    now = now or datetime.datetime.now()
    directory = Path(options.out_dir).absolute() if options.out_dir else default_directory(spec, now)
    env = tokens.build_environment(spec, directory, warnings)
    parameters = _parameters(spec, options, env, directory)
    nodes, used = expand(spec, env, parameters, directory, backend.script_suffix, options.hashws, warnings,
                         options.workspace_layout)
    check_resources(spec, nodes)
    plan.check_unique_workspaces(spec, nodes)
    nodes = plan.order(nodes)
    if options.strict and warnings.strict_messages:
        raise SpecError(warnings.strict_messages)
    # an in-memory spec has no file to copy: compile_study writes its text
    extra = {} if raw.in_memory else {spec.path.name: str(spec.path)}
    if options.pgen:
        extra[Path(options.pgen).name] = str(options.pgen)
    return Study(spec=spec, directory=directory, backend=backend_name, nodes=nodes, used_parameters=used,
                 warnings=tuple(warnings.all()), extra_files=extra,
                 options={"throttle": options.throttle, "max_array_size": options.max_array_size,
                          "retries": options.retries, "rlimit": options.rlimit,
                          "bundle": options.bundle, "max_queued": options.max_queued},
                 environment=env, identity=uuid.uuid4().hex[:12])


def cluster_max_array_size(backend) -> int:
    """The cluster's largest job array, asked once before rendering (Slurm's MaxArraySize from
    scontrol when it is here and answers), else the scheduler's default. Render never asks."""
    ask = backend.facts_command()
    if ask is not None and runner.available(ask.argv[0]):
        found = backend.parse_max_array_size(runner.run(ask))
        if found:
            return found
    return backend.capabilities.max_array_size


def cluster_queue_limit(backend, study: Study) -> int:
    """The most jobs the cluster lets this user queue for the study's account (Slurm: MaxSubmitJobs
    of the association and its QOS, read with sacctmgr), asked once before rendering; 0: no limit
    known. Only ever lowers what is queued at once: no answer means no limit, as before."""
    commands = backend.queue_limit_commands(_user())
    if not commands or not runner.available(commands[0].argv[0]):
        return 0
    texts = []
    for command in commands:
        texts.append(runner.run(command))
        if not texts[-1].strip():
            return 0    # no answer (no accounting, slurmdbd out of reach): do not wait for the others
    return backend.parse_queue_limit(texts, study.spec.batch) or 0


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):   # no name for this uid (a container): the cluster cannot be asked
        return ""


def bundle_choice(study: Study, backend) -> Optional[bundles.Choice]:
    """How many nodes each job runs: the steps' `bundle` keys, --bundle, and --max-queued or the
    cluster's own limit (docs/big-sweeps.md). None: one job per node."""
    if not backend.has_queue:
        return None   # the local runner runs nodes one by one: bundles mean nothing there
    fixed = bundles.per_step_sizes(study.spec.steps)
    default = int(study.options.get("bundle") or 0)
    max_queued = int(study.options.get("max_queued") or 0)
    source = "--max-queued"
    if not max_queued and (backend.capabilities.bundles or fixed or default > 1):
        max_queued, source = cluster_queue_limit(backend, study), backend.queue_limit_name
    choice = bundles.choose_for(study.nodes, backend.capabilities, lambda node: backend.array_key(study, node),
                                fixed, default, max_queued, source)
    if choice is None or not choice.bundled:
        return None
    if not backend.capabilities.bundles:
        raise CompileError(f"bundles are not supported by the {backend.name} backend yet ({choice.note}); "
                           f"compile for Slurm, LSF, Flux or PBS, or without --bundle, --max-queued and the steps' `bundle` keys")
    return choice


def plan_study(study: Study, backend, notes: Optional[List[str]] = None) -> plan.Plan:
    """Pass 4b: the scheduler jobs (arrays where the backend has them and the headers agree,
    bundles when the queue limit asks for them), with the cluster's facts resolved first
    (--max-array-size, else the cluster's own limit). What was chosen goes to ``notes``."""
    limit = 1
    if backend.capabilities.arrays or backend.capabilities.bundle_arrays:
        limit = int(study.options.get("max_array_size") or 0) or cluster_max_array_size(backend)
    choice = bundle_choice(study, backend)
    if choice is not None:
        if notes is not None:
            notes.append(choice.note)
        return bundles.plan_bundles(study.nodes, backend.capabilities, limit,
                                    lambda node: backend.array_key(study, node), choice.sizes, choice.max_queued)
    return plan.plan_jobs(study.nodes, backend.capabilities, limit, lambda node: backend.array_key(study, node))


def _parameters(spec: Spec, options: Options, env: Dict[str, str], directory: Path) -> List[Parameter]:
    if options.pargs and not options.pgen:
        raise SpecError(["--pargs needs --pgen: the KEY:VALUE pairs are passed to a parameter generator"])
    product = options.cartesian or spec.raw.data.get("global.combine") == "cartesian"
    if options.pgen:
        generator = load_generator(Path(options.pgen), env, parse_pargs(options.pargs))
        if product:
            generator = cartesian_product(generator)
    else:
        generator = from_spec_block(spec.parameters, product)
    return generator.to_parameters()


def check_study(options: Options) -> Study:
    """Everything compile checks (rendering included), writing nothing."""
    study = build_study(options)
    backend = get_backend(study.backend)
    rendered = render.render(study, backend, lambda: plan_study(study, backend), "")
    rendered.study_level()
    for _ in rendered.node_files(0, rendered.node_count):
        pass  # rendered and dropped: rendering finds the errors the templates' inputs can have
    return study


def _write_spec_copy(stage: Path, raw: RawSpec) -> None:
    """The record of a spec given in memory: its YAML, where a spec file's copy would be."""
    try:
        (stage / raw.copy_name).write_text(raw.text, encoding="utf-8")
    except OSError as exc:
        raise CompileError(f"cannot write the study directory: {exc}") from None


def compile_study(options: Options, now: Optional[datetime.datetime] = None,
                  progress: Callable[[int, int], None] = lambda done, total: None) -> Result:
    """Compile the spec into a new study directory; nothing is left behind on failure.
    ``progress(done, total)`` is told how many node scripts are written."""
    study = build_study(options, now)
    backend = get_backend(study.backend)
    created = (now or datetime.datetime.now()).isoformat(timespec="seconds")
    notes: List[str] = []
    rendered = render.render(study, backend, lambda: plan_study(study, backend, notes), created)
    made_outside: List[Path] = []
    try:
        with emit.staging(study.directory) as stage:
            made_outside = tokens.clone_git_dependencies(study.spec, study.environment, study.directory, stage)
            if study.spec.raw.in_memory:
                _write_spec_copy(stage, study.spec.raw)
            emit.write_files(stage, rendered, {name: Path(src) for name, src in study.extra_files.items()},
                             progress)
            emit.publish(stage, study.directory)
    except BaseException:
        for path in made_outside:  # clones we made outside the study dir are ours to remove
            shutil.rmtree(path, ignore_errors=True)
        raise
    return Result(study=study, directory=study.directory, warnings=list(study.warnings), notes=notes)
