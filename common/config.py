"""Task configuration: one dataclass per task, three profiles, and a command line generated from the fields.

A value is decided in this order, later wins:

1. the dataclass default,
2. the profile (`smoke` = seconds for tests, `quick` = minutes on a CPU, `full` = the published numbers),
3. a JSON file given with `--config` (a run's own `config.json`, or the tuner's `best.json`),
4. flags on the command line (`--epochs 3 --activation tanh`).

Every field becomes a flag of the same name with dashes. Fields whose metadata names a registry
(`metadata={"registry": "activation"}`) are checked against that registry, so a typo fails at start-up with
the list of valid names instead of after an hour of training. A renamed field lists its old names in
`metadata={"aliases": ("old_name",)}`: the old flag, JSON key (an older run's config.json or best.json) and
`--set` key still set it, and `--help` shows only the new name.
"""

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import ClassVar

from common.errors import UserError

PROFILES = ("smoke", "quick", "full")

# Every integer setting is a count, a size or a seed: never negative, and within what TensorFlow takes for
# shapes and counts (int32); seeds go up to 2**32 - 1, the largest NumPy and scikit-learn accept. A larger
# number is a typo (`--epochs 1e20`), refused before anything starts.
INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1


def _help(text, **extra):
    return dict(help=text, **extra)


@dataclasses.dataclass
class TrainConfig:
    """The fields every task shares: what to run, how to optimise, where to write."""

    # Profile defaults per task: {"smoke": {...}, "quick": {...}, "full": {...}}.
    PROFILES: ClassVar[dict] = {"smoke": {}, "quick": {}, "full": {}}
    # profile -> model -> settings applied over the profile's when the run trains that model.
    MODEL_PROFILES: ClassVar[dict] = {}
    TASK: ClassVar[str] = "task"

    profile: str = dataclasses.field(default="quick", metadata=_help(
        "smoke (seconds), quick (minutes on CPU), full (published numbers, GPU)", choices=PROFILES))
    seed: int = dataclasses.field(default=42, metadata=_help("seeds Python, NumPy and Keras"))
    epochs: int = dataclasses.field(default=20, metadata=_help("maximum number of epochs"))
    batch_size: int = dataclasses.field(default=32, metadata=_help(
        "the global batch: examples per training step, split over every replica under --distribution"))
    optimizer: str = dataclasses.field(default="adam", metadata={"registry": "optimizer"})
    learning_rate: float = 1e-3
    momentum: float = dataclasses.field(default=0.9, metadata=_help(
        "momentum of the momentum and nesterov SGD optimizers"))
    weight_decay: float = dataclasses.field(default=0.0, metadata=_help(
        "decoupled weight decay (AdamW/SGD); use --l2 for an L2 penalty in the loss"))
    schedule: str = dataclasses.field(default="constant", metadata={"registry": "schedule"})
    step_epochs: int = dataclasses.field(default=30, metadata=_help(
        "step schedule: multiply the rate by --gamma every this many epochs"))
    milestones: tuple[int, ...] = dataclasses.field(default=(), metadata=_help(
        "multistep schedule: epochs at which the rate is multiplied by --gamma, e.g. 30,60"))
    gamma: float = dataclasses.field(default=0.1, metadata=_help(
        "decay factor of the step/multistep schedules, per-epoch factor of the exponential one"))
    warmup_epochs: float = dataclasses.field(default=0.0, metadata=_help(
        "linear warm-up before the schedule (cosine, warmup)"))
    clipnorm: typing.Optional[float] = dataclasses.field(default=None, metadata=_help(
        "clip each gradient to this L2 norm ('none' = off)"))
    label_smoothing: float = 0.0
    early_stopping: int = dataclasses.field(default=0, metadata=_help(
        "stop after this many epochs without validation improvement (0 = off); best weights kept"))
    reduce_lr_patience: int = dataclasses.field(default=0, metadata=_help(
        "ReduceLROnPlateau patience in epochs (0 = off; only with --schedule constant)"))
    mixed_precision: bool = dataclasses.field(default=False, metadata=_help(
        "16-bit compute (--mixed-dtype) with float32 weights"))
    mixed_dtype: str = dataclasses.field(default="auto", metadata=_help(
        "compute dtype of --mixed-precision: float16 (GPU tensor cores; slow on CPU), bfloat16 (CPUs with "
        "AVX-512 BF16 or AMX, TPUs) or auto (float16 on a GPU, bfloat16 on a CPU that computes it, else "
        "float32)", choices=("auto", "float16", "bfloat16")))
    jit_compile: str = dataclasses.field(default="auto", metadata=_help(
        "XLA compilation: auto (on for GPU), true, false", choices=("auto", "true", "false")))
    steps_per_execution: int = dataclasses.field(default=1, metadata=_help(
        "training steps per compiled call: above 1 cuts the per-step overhead of small models (batch-level "
        "callbacks then run every that many steps; the numbers do not change)"))
    deterministic: bool = dataclasses.field(default=True, metadata=_help(
        "deterministic TensorFlow ops, so one seed gives the same numbers on CPU"))
    tensorboard: bool = dataclasses.field(default=True, metadata=_help("write TensorBoard logs"))
    verbose: int = dataclasses.field(default=2, metadata=_help("Keras fit verbosity: 0, 1 or 2"))
    data_dir: typing.Optional[str] = dataclasses.field(default=None, metadata=_help(
        "data root (default: $KERAS_TUTORIALS_DATA, then ~/.keras/datasets, then download)",
        portable=False))
    output_dir: str = dataclasses.field(default="runs", metadata=_help(
        "runs go to <output-dir>/<task>/<run-id>/", portable=False))
    run_id: typing.Optional[str] = dataclasses.field(default=None, metadata=_help(
        "name of the run folder; an unfinished run of this name is resumed", portable=False))
    distribution: str = dataclasses.field(default="none", metadata=_help(
        "none; mirrored: all local GPUs (tf.distribute.MirroredStrategy); multi_worker: several processes or "
        "machines (tf.distribute.MultiWorkerMirroredStrategy, cluster from TF_CONFIG or --workers); "
        "data_parallel: all devices with keras.distribution.DataParallel (JAX); see common/distribution.py",
        choices=("none", "mirrored", "multi_worker", "data_parallel")))
    workers: typing.Optional[str] = dataclasses.field(default=None, metadata=_help(
        "multi_worker/data_parallel: host:port of every worker, comma-separated, the chief first (instead of "
        "TF_CONFIG; python -m tasks.distributed sets it on one machine)", portable=False))
    worker_index: typing.Optional[int] = dataclasses.field(default=None, metadata=_help(
        "this process's place in --workers (0 = the chief, which writes the run folder)", portable=False))

    # The range of each numeric setting (every element, for a tuple); checked by `check_values` together
    # with the types, finiteness and integer limits of every field. Subclasses add their own fields.
    RANGES: ClassVar[dict] = {
        "epochs": ">= 1", "batch_size": ">= 1", "steps_per_execution": ">= 1", "step_epochs": ">= 1",
        "milestones": ">= 1", "learning_rate": "> 0", "momentum": "[0, 1)", "weight_decay": ">= 0",
        "gamma": "> 0", "warmup_epochs": ">= 0", "clipnorm": "> 0", "label_smoothing": "[0, 1)",
        "verbose": "[0, 2]",
    }

    def validate(self):
        """Raise UserError for any value that cannot work; called once every source is merged, before
        anything is read or written."""
        from common import registry  # late import: keeps `--help` free of a TensorFlow import

        check_values(self)
        check_run_id(self.run_id)
        for f in dataclasses.fields(self):
            kind = field_metadata(type(self), f).get("registry")
            if kind:
                registry.check_name(kind, getattr(self, f.name))
        if self.schedule == "multistep" and not self.milestones:
            raise UserError("--schedule multistep needs --milestones, e.g. --milestones 30,60.")
        if list(self.milestones) != sorted(set(self.milestones)):
            raise UserError(f"--milestones must be increasing epochs, got {list(self.milestones)}.")
        if self.warmup_epochs > self.epochs:
            raise UserError(f"--warmup-epochs ({self.warmup_epochs:g}) must not exceed --epochs "
                            f"({self.epochs}).")
        check_folder_setting("--output-dir", self.output_dir, may_be_missing=True)
        if self.data_dir is not None:
            check_folder_setting("--data-dir", self.data_dir)

    def to_dict(self):
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def save(self, path):
        Path(path).write_text(json.dumps({"task": self.TASK, **self.to_dict()}, indent=2) + "\n")


def _flag(name):
    return name.replace("_", "-")


def _parse_range(spec):
    """'[0, 1)' / '(0, 1]' / '>= 1' / '> 0' -> (low, high, low_open, high_open); None = unbounded."""
    spec = spec.strip()
    if spec.startswith((">=", ">")):
        return float(spec.lstrip(">=").strip()), None, not spec.startswith(">="), False
    low, high = (part.strip() for part in spec[1:-1].split(","))
    return float(low), float(high), spec[0] == "(", spec[-1] == ")"


def _outside(value, spec):
    low, high, low_open, high_open = _parse_range(spec)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    return below or above


def _expected(spec):
    low, high, low_open, _ = _parse_range(spec)
    if high is None:
        number = f"{low:g}"
        return f"greater than {number}" if low_open else f"at least {number}"
    return f"in {spec.strip()}"


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def check_values(config):
    """Raise UserError for the first setting whose value cannot work: a wrong type, NaN or infinity, a
    negative or absurdly large integer, a name outside its choices, or a value outside the range given in
    the config class's `RANGES` (merged over its base classes, the subclass's word last)."""
    hints = typing.get_type_hints(type(config))
    ranges = {}
    for cls in reversed(type(config).__mro__):
        ranges.update(vars(cls).get("RANGES", {}))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        kind, _ = _base_type(hints[f.name])
        flag = f"--{_flag(f.name)}"
        numbers = value if kind is tuple else (value,)
        if kind in (int, tuple):
            if any(isinstance(n, bool) or not isinstance(n, int) for n in numbers):
                what = "whole numbers" if kind is tuple else "a whole number"
                raise UserError(f"{flag} expects {what}, got {_plain(value)}.")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"{flag} expects a finite number, got {value}.")
        elif kind is bool and not isinstance(value, bool):
            raise UserError(f"{flag} expects true or false, got {value}.")
        elif kind is str and not isinstance(value, str):
            raise UserError(f"{flag} expects a name, got {value}.")
        choices = field_metadata(type(config), f).get("choices")
        if choices and value not in choices:
            raise UserError(f"{flag} must be one of {', '.join(choices)}, got '{value}'.")
        spec = ranges.get(f.name)
        if spec and kind in (int, float, tuple) and any(_outside(n, spec) for n in numbers):
            raise UserError(f"{flag} must be {_expected(spec)}, got {_plain(value)}.")
        if kind in (int, tuple):
            top = SEED_MAX if f.name.endswith("seed") else INT_MAX
            if any(not 0 <= n <= top for n in numbers):
                raise UserError(f"{flag} must be from 0 to {top}, got {_plain(value)}.")


def whole_number(flag, text, minimum=0):
    """A whole number given to a command's flag (not a config field): `minimum`..2**31-1 or UserError."""
    try:
        value = _whole(text)
    except (TypeError, ValueError):
        raise UserError(f"{flag} expects a whole number, got {json.dumps(text)}.") from None
    if not minimum <= value <= INT_MAX:
        raise UserError(f"{flag} must be at least {minimum}, got {value}." if value < minimum
                        else f"{flag} must be at most {INT_MAX}, got {value}.")
    return value


def check_folder_setting(flag, value, may_be_missing=False):
    """A folder setting names a folder (or, with `may_be_missing`, a place where one can be created)."""
    if not str(value).strip():
        raise UserError(f"{flag} must name a folder, got an empty value.")
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; expected a folder.")
    if not may_be_missing and not path.is_dir():
        raise UserError(f"{flag} {path} is not a folder.")


def check_run_id(run_id):
    """A run id names one folder under <output-dir>/<task>/: a plain name, never a path (common/runs.py)."""
    if run_id is not None:
        from common.runs import check_plain_name

        check_plain_name(run_id)


def _base_type(hint):
    """(python type, optional?) for the hints used in configs: int, float, str, bool, tuple[int, ...]."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)][0]
        return _base_type(inner)[0], True
    if origin is tuple:
        return tuple, False
    return hint, False


def _convert(name, hint, value, source):
    """Convert a raw value (string from the CLI or JSON value) to the field's type, or raise UserError."""
    kind, optional = _base_type(hint)
    where = f"--{_flag(name)}" if source == "flag" else f"'{name}' in {source}"
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))):
        return None
    try:
        if kind is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace(" ", ",").split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError(value)
            return tuple(_whole(v) for v in value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if kind is int:
            return _whole(value)
        if kind is float and isinstance(value, bool):
            raise ValueError(value)  # JSON true is not the number 1
        if kind is str and not isinstance(value, str):
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        readable = {tuple: "comma-separated whole numbers", int: "a whole number", float: "a number",
                    str: "a name"}.get(kind, kind.__name__)
        raise UserError(f"{where} expects {readable}, got {json.dumps(value)}.") from None


def _whole(value):
    """An int from an int or a string of digits; JSON true and floats (1e20, 3.5) are not whole numbers."""
    if isinstance(value, (bool, float)):
        raise TypeError(value)
    return int(value.strip() if isinstance(value, str) else value)


def aliases(cls):
    """{old name: field name} for the renamed fields of a config class (their `aliases` metadata)."""
    return {old: f.name for f in dataclasses.fields(cls) for old in field_metadata(cls, f).get("aliases", ())}


def _apply(config, values, source):
    """Set fields from a {name: value} mapping (old names through their alias), rejecting other names."""
    hints = typing.get_type_hints(type(config))
    names = {f.name: f for f in dataclasses.fields(config)}
    renamed = aliases(type(config))
    for name, value in values.items():
        if name.startswith("_") or name == "task":
            continue
        name = renamed.get(name, name)
        if name not in names:
            valid = ", ".join(sorted(names))
            raise UserError(f"unknown setting '{name}' in {source}; valid settings: {valid}.")
        if source != "flag" and not field_metadata(type(config), names[name]).get("portable", True):
            continue  # where a run was written is not part of the recipe
        setattr(config, name, _convert(name, hints[name], value, source))


def read_json_config(path, task=None):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"config file {path} is not valid JSON ({error.msg}, line {error.lineno}).") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a JSON object of settings.")
    if task and data.get("task", task) != task:
        raise UserError(f"config file {path} is for task '{data['task']}', not '{task}'.")
    return data


def build_config(cls, profile=None, config_file=None, overrides=None, model_profiles=True):
    """Merge defaults, profile, JSON file and overrides (in that order) into a validated `cls`.

    `model_profiles`: also apply the profile's settings for the model the run trains (`MODEL_PROFILES`);
    False gives every model the same base (the tuner, which samples the model per trial)."""
    overrides = dict(overrides or {})
    file_values = read_json_config(config_file, cls.TASK) if config_file else {}
    profile = profile or overrides.pop("profile", None) or file_values.get("profile") or cls.profile
    if profile not in cls.PROFILES:
        raise UserError(f"unknown profile '{profile}'; valid profiles: {', '.join(cls.PROFILES)}.")
    config = cls()
    _apply(config, cls.PROFILES[profile], f"profile {profile}")
    # A lesson may tune a profile for one model (CIFAR-10's quick profile for its fast net): those settings
    # come after the profile's and before the file's and the flags, for the model they will name.
    if model_profiles:
        model = overrides.get("model", file_values.get("model", getattr(config, "model", None)))
        _apply(config, cls.MODEL_PROFILES.get(profile, {}).get(model, {}), f"profile {profile} for {model}")
    _apply(config, file_values, str(config_file))
    _apply(config, overrides, "flag")
    config.profile = profile
    config.validate()
    return config


def field_metadata(cls, field):
    """A field's metadata merged over what its base classes said of it: a lesson that only changes a
    default (`epochs: int = 16`) keeps the help, registry, choices and portability of the shared field."""
    merged = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base) and field.name in base.__dataclass_fields__:
            merged.update(base.__dataclass_fields__[field.name].metadata)
    return merged


def add_config_arguments(parser, cls):
    """Add --profile, --config and one flag per dataclass field to an argparse parser."""
    parser.add_argument("--config", dest="config_file", default=argparse.SUPPRESS, metavar="JSON",
                        help="JSON file of settings (a run's config.json or the tuner's best.json)")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, _ = _base_type(hints[f.name])
        meta = field_metadata(cls, f)
        help_text = meta.get("help", "")
        if meta.get("registry"):
            from common import registry

            help_text = (help_text + " " if help_text else "") + "one of: " + ", ".join(
                registry.names(meta["registry"]))
        # An old name is the same option under a hidden second flag: it still works, --help shows the new one.
        shown = [(f.name, help_text or None)] + [(old, argparse.SUPPRESS) for old in meta.get("aliases", ())]
        for name, flag_help in shown:
            kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=flag_help)
            if kind is bool:
                parser.add_argument(f"--{_flag(name)}", action=argparse.BooleanOptionalAction, **kwargs)
            else:
                # Values stay strings here and are converted by _convert, so a bad value gives our message.
                parser.add_argument(f"--{_flag(name)}", metavar=f.name.upper(), choices=meta.get("choices"),
                                    **kwargs)
    return parser


def config_from_namespace(cls, namespace):
    """Build the config from parsed arguments (only the flags that were given count as overrides)."""
    values = dict(vars(namespace))
    config_file = values.pop("config_file", None)
    names = {f.name for f in dataclasses.fields(cls)}
    overrides = {k: v for k, v in values.items() if k in names}
    return build_config(cls, config_file=config_file, overrides=overrides)
