"""Task configuration: one dataclass per task, three profiles, and a command line generated from the fields.

A value is decided in this order, later wins:

1. the dataclass default,
2. the profile (`smoke` = seconds for tests, `quick` = minutes on a CPU, `full` = the published numbers),
3. a JSON file given with `--config` (a run's own `config.json`, or the tuner's `best.json`),
4. flags on the command line (`--epochs 3 --activation tanh`).

Every field becomes a flag of the same name with dashes, declared with `setting(default, group, help)`:
`--help` lists the flags by section (`GROUPS`: data, model, training, run), each with its help, its default
and the profiles that change it. A field that names a registry (`setting(..., registry="activation")`) is
checked against that registry, so a typo fails at start-up with the list of valid names instead of after an
hour of training. A renamed field lists its old names (`aliases=("old_name",)`): the old flag, JSON key (an
older run's config.json or best.json) and `--set` key still set it, and `--help` shows only the new name.

`build_config` records where each value came from; `settings_block` turns that into the lines a run prints
at start: the settings that differ from the lesson file's defaults, each with its source.
"""

import argparse
import dataclasses
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import ClassVar

from common.errors import UserError

PROFILES = ("smoke", "quick", "full")
# A run id or a search name: one folder name (`check_plain_name`).
PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")

# The sections of `--help`, in order: every field names one (`setting(0.0, "model", "dropout ...")`), so a
# reader finds a flag among a dozen instead of sixty.
GROUPS = {
    "data": "data (source, splits, preprocessing, augmentation)",
    "model": "model (the network)",
    "training": "training (optimizer, schedule, loss, regularisation, evaluation)",
    "run": "run (profile, recipe, where the run is written and how it executes)",
}

# `settings_block` aligns the sources after the settings, up to this width (a longer value goes past it).
SETTING_COLUMN = 40

# Every integer setting is a count, a size or a seed: never negative, and within what TensorFlow takes for
# shapes and counts (int32); seeds go up to 2**32 - 1, the largest NumPy and scikit-learn accept. A larger
# number is a typo (`--epochs 1e20`), refused before anything starts.
INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1


def setting(default, group, text, **extra):
    """A config field: its default, its section of `--help` (one of `GROUPS`) and its one-line help.

        dropout: float = setting(0.0, "model", "dropout after each hidden layer (0 = off)")

    `extra` is more metadata: `registry` (a name checked against common/registry.py), `choices`, `aliases`
    (old names), `portable=False` (where a run is written: not part of its recipe), `metavar` (for --help).
    A lesson that only changes a shared field's default redeclares it bare (`epochs: int = 16`) and keeps
    the rest (`field_metadata`)."""
    return dataclasses.field(default=default, metadata=dict(help=text, group=group, **extra))


@dataclasses.dataclass
class TrainConfig:
    """The fields every task shares: what to run, how to optimise, where to write."""

    # Profile defaults per task: {"smoke": {...}, "quick": {...}, "full": {...}}.
    PROFILES: ClassVar[dict] = {"smoke": {}, "quick": {}, "full": {}}
    # profile -> model -> settings applied over the profile's when the run trains that model.
    MODEL_PROFILES: ClassVar[dict] = {}
    TASK: ClassVar[str] = "task"

    profile: str = setting(
        "quick", "run", "smoke (seconds), quick (minutes on CPU), full (published numbers, GPU)",
        choices=PROFILES)
    seed: int = setting(42, "training", "seeds Python, NumPy and Keras")
    epochs: int = setting(20, "training", "maximum number of epochs")
    batch_size: int = setting(
        32, "training", "the global batch: examples per training step, split over every replica under "
        "--distribution")
    optimizer: str = setting("adam", "training", "optimizer (common/registry.py)", registry="optimizer")
    learning_rate: float = setting(1e-3, "training", "the optimizer's learning rate: the peak of --schedule")
    momentum: float = setting(0.9, "training", "momentum of the momentum and nesterov SGD optimizers")
    weight_decay: float = setting(
        0.0, "training", "decoupled weight decay (AdamW/SGD); use --l2 for an L2 penalty in the loss")
    schedule: str = setting(
        "constant", "training", "learning-rate schedule over the epochs", registry="schedule")
    step_epochs: int = setting(
        30, "training", "step schedule: multiply the rate by --gamma every this many epochs")
    milestones: tuple[int, ...] = setting(
        (), "training", "multistep schedule: epochs at which the rate is multiplied by --gamma, e.g. 30,60")
    gamma: float = setting(
        0.1, "training", "decay factor of the step/multistep schedules, per-epoch factor of the exponential "
        "one")
    warmup_epochs: float = setting(
        0.0, "training", "epochs of linear rise to the rate (cosine, onecycle, triangular, warmup; 0 = the "
        "schedule's own)")
    clipnorm: typing.Optional[float] = setting(
        None, "training", "clip each gradient to this L2 norm ('none' = off)")
    label_smoothing: float = setting(
        0.0, "training", "mixes this share of the uniform distribution into each one-hot target (0 = off)")
    early_stopping: int = setting(
        0, "training", "stop after this many epochs without validation improvement (0 = off); best weights "
        "kept")
    reduce_lr_patience: int = setting(
        0, "training", "ReduceLROnPlateau patience in epochs (0 = off; only with --schedule constant)")
    mixed_precision: bool = setting(False, "run", "16-bit compute (--mixed-dtype) with float32 weights")
    mixed_dtype: str = setting(
        "auto", "run", "compute dtype of --mixed-precision: float16 (GPU tensor cores; slow on CPU), "
        "bfloat16 (CPUs with AVX-512 BF16 or AMX, TPUs) or auto (float16 on a GPU, bfloat16 on a CPU that "
        "computes it, else float32)", choices=("auto", "float16", "bfloat16"))
    jit_compile: str = setting(
        "auto", "run", "XLA compilation: auto (on for GPU), true, false", choices=("auto", "true", "false"))
    steps_per_execution: int = setting(
        1, "run", "training steps per compiled call: above 1 cuts the per-step overhead of small models; "
        "batch-level callbacks then run every that many steps, so the numbers can change (part of the "
        "recipe: a run resumes only with its own value)")
    deterministic: bool = setting(
        True, "run", "deterministic TensorFlow ops, so one seed gives the same numbers on CPU")
    tensorboard: bool = setting(True, "run", "write TensorBoard logs")
    verbose: int = setting(2, "run", "Keras fit verbosity: 0, 1 or 2")
    data_dir: typing.Optional[str] = setting(
        None, "data", "data root; none: $KERAS_TUTORIALS_DATA, then ~/.keras/datasets, then download",
        portable=False, metavar="DIR")
    output_dir: str = setting(
        "runs", "run", "runs go to <output-dir>/<task>/<run-id>/", portable=False, metavar="DIR")
    run_id: typing.Optional[str] = setting(
        None, "run", "name of the run folder; an unfinished run of this name is resumed", portable=False)
    distribution: str = setting(
        "none", "run", "none; mirrored: all local GPUs (tf.distribute.MirroredStrategy); multi_worker: "
        "several processes or machines (tf.distribute.MultiWorkerMirroredStrategy, cluster from TF_CONFIG or "
        "--workers); data_parallel: all devices with keras.distribution.DataParallel (JAX); see "
        "common/distribution.py", choices=("none", "mirrored", "multi_worker", "data_parallel"))
    workers: typing.Optional[str] = setting(
        None, "run", "multi_worker/data_parallel: host:port of every worker, comma-separated, the chief "
        "first (instead of TF_CONFIG; python -m tasks.distributed sets it on one machine)",
        portable=False, metavar="HOST:PORT,...")
    worker_index: typing.Optional[int] = setting(
        None, "run", "this process's place in --workers (0 = the chief, which writes the run folder)",
        portable=False)

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


def check_plain_name(name, flag="--run-id"):
    """A run or search name is one folder name: never a path, never `.` or `..`."""
    if not PLAIN_NAME.fullmatch(name or "") or name in (".", ".."):
        raise UserError(f"{flag} must be a plain name (letters, digits, '.', '_', '-'; at most 200 "
                        f"characters; not '.' or '..'), got {name!r}: it names one folder, never a path.")


def check_run_id(run_id):
    """A run id names one folder under <output-dir>/<task>/ (common/runs.py): a plain name, never a path."""
    if run_id is not None:
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
    if kind is str and isinstance(value, str) and not value.strip():
        # An empty name is a slip (`--run-id "$ID"` with ID unset), not a request for the default.
        raise UserError(f"{where} must not be empty; leave it out to use the default.")
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


def _apply(config, values, source, label=None):
    """Set fields from a {name: value} mapping (old names through their alias), rejecting other names.

    Returns {field name: `label`} for the fields it set (`label` defaults to `source`, the words of error
    messages): the bookkeeping behind `settings_block`."""
    hints = typing.get_type_hints(type(config))
    applied = {}
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
        applied[name] = label or source
    return applied


def read_json_config(path, task=None):
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config file {path} is a folder; expected a JSON file of settings.")
    if not path.is_file():
        raise UserError(f"config file {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise UserError(f"config file {path} is not UTF-8 text (byte {error.start}); expected a JSON file "
                        "of settings.") from None
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
    False gives every model the same base (the tuner, which samples the model per trial).

    The config's `sources` attribute (not a field: it is in no config.json or fingerprint) says where each
    value that is not the dataclass default came from, for `settings_block`: `profile quick`, `profile quick
    for fast`, the --config file's name or `flag` (an override; `profile` given by a caller counts as one)."""
    overrides = dict(overrides or {})
    file_values = read_json_config(config_file, cls.TASK) if config_file else {}
    given = profile or overrides.pop("profile", None)
    profile = given or file_values.get("profile") or cls.profile
    if profile not in cls.PROFILES:
        raise UserError(f"unknown profile '{profile}'; valid profiles: {', '.join(cls.PROFILES)}.")
    config = cls()
    sources = _apply(config, cls.PROFILES[profile], f"profile {profile}")
    # A lesson may tune a profile for one model (CIFAR-10's quick profile for its fast net): those settings
    # come after the profile's and before the file's and the flags, for the model they will name.
    if model_profiles:
        model = overrides.get("model", file_values.get("model", getattr(config, "model", None)))
        sources.update(_apply(config, cls.MODEL_PROFILES.get(profile, {}).get(model, {}),
                              f"profile {profile} for {model}"))
    if config_file:
        sources.update(_apply(config, file_values, str(config_file), label=Path(config_file).name))
    sources.update(_apply(config, overrides, "flag"))
    config.profile = profile
    if given:
        sources["profile"] = "flag"
    config.validate()
    config.sources = sources
    # What each source gave, so that `settings_block` tells a value the lesson's code changed afterwards.
    config._built_values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
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
    """Add --config and one flag per dataclass field to an argparse parser, in the sections of `GROUPS`.

    Every flag's default is SUPPRESS, so only the flags given count as overrides (`config_from_namespace`);
    its help line ends with the dataclass default and the profiles that change it (`help_line`)."""
    sections = {group: parser.add_argument_group(title) for group, title in GROUPS.items()}
    sections["run"].add_argument(
        "--config", dest="config_file", default=argparse.SUPPRESS, metavar="JSON",
        help="JSON file of settings: a run's config.json, the tuner's best.json or recipes/*.json "
             "(default: none)")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, _ = _base_type(hints[f.name])
        meta = field_metadata(cls, f)
        section = sections.get(meta.get("group")) or sections.setdefault(
            None, parser.add_argument_group("other settings"))
        # An old name is the same option under a hidden second flag: it still works, --help shows the new one.
        flags = [(f.name, help_line(cls, f))] + [(old, argparse.SUPPRESS) for old in meta.get("aliases", ())]
        for name, flag_help in flags:
            kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=flag_help)
            if kind is bool:
                section.add_argument(f"--{_flag(name)}", action=argparse.BooleanOptionalAction, **kwargs)
            else:
                # Values stay strings here and are converted by _convert, so a bad value gives our message.
                section.add_argument(f"--{_flag(name)}", metavar=_metavar(kind, meta),
                                     choices=meta.get("choices"), **kwargs)
    return parser


def _metavar(kind, meta):
    return meta.get("metavar") or {int: "N", float: "X", tuple: "N,..."}.get(kind, "NAME")


def help_line(cls, field):
    """A field's `--help` text: its help, the registry's names, then its default and the profiles that
    change it, e.g. `maximum number of epochs (default: 150; smoke: 8)`."""
    meta = field_metadata(cls, field)
    text = meta.get("help", "")
    if meta.get("registry"):
        from common import registry  # late import: only a registry field needs it

        names = "one of: " + ", ".join(registry.names(meta["registry"]))
        text = f"{text}, {names}" if text else names
    notes = "; ".join([f"default: {shown(field_default(field))}", *profile_notes(cls, field.name)])
    return f"{text} ({notes.replace('%', '%%')})".strip()


def profile_notes(cls, name):
    """Where the profiles change a field's default, as `--help` shows it: `smoke: 8`, `quick for fast: 10`
    (`MODEL_PROFILES`: the quick profile when the run trains the fast net); `(plain run)` marks the value a
    run without --profile, --config or --model uses (`help_legend`)."""
    default = _plain(field_default(cls.__dataclass_fields__[name]))
    plain, plain_model = plain_run(cls)
    notes = []
    for profile, values in cls.PROFILES.items():
        by_model = cls.MODEL_PROFILES.get(profile, {})
        base = values.get(name, default)
        if name in values and _plain(base) != default:
            mark = " (plain run)" if profile == plain and name not in by_model.get(plain_model, {}) else ""
            notes.append(f"{profile}{mark}: {shown(base)}")
        for model, settings in by_model.items():
            if name in settings and _plain(settings[name]) != _plain(base):
                mark = " (plain run)" if (profile, model) == (plain, plain_model) else ""
                notes.append(f"{profile} for {model}{mark}: {shown(settings[name])}")
    return notes


def help_legend(cls):
    """The lines under a lesson's flags in `--help` that say how their defaults read."""
    plain, model = plain_run(cls)
    by_model = [(profile, name) for profile, models in cls.MODEL_PROFILES.items() for name in models]
    lines = ["Each flag ends with its default and the profiles that change it; 'plain run' marks the value",
             f"of a run without --profile, --config or --model (--profile {plain}"
             + (f" --model {model})." if by_model else ").")]
    if by_model:
        profile, name = by_model[0]
        lines.append(f"'{profile} for {name}': the {profile} profile with --model {name}.")
    return "\n".join(lines)


def plain_run(cls):
    """(profile, model) of a run given no settings: the default profile and the model it trains (None for a
    lesson without a `model` field)."""
    fields = cls.__dataclass_fields__
    profile = fields["profile"].default
    model = fields["model"].default if "model" in fields else None
    return profile, cls.PROFILES[profile].get("model", model)


def field_default(field):
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def shown(value):
    """A setting's value as it is typed on the command line (`--help`, `settings_block`)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "empty"
    if isinstance(value, float):
        return f"{value:.6g}"  # 0.111111 for 1/9: six digits say what a reader needs; config.json keeps all
    return str(value)


def lesson_file(cls):
    """The file that defines a config class, as a reader finds it: `tasks/phone_price.py`."""
    module = cls.__module__
    return f"tasks/{cls.TASK}.py" if module == "__main__" else module.replace(".", "/") + ".py"


def settings_block(config):
    """The settings of a run that differ from its lesson file's dataclass defaults, one line each with where
    the value came from (`build_config` keeps that in `config.sources`):

        settings that differ from tasks/phone_price.py's defaults:
          steps_per_execution = 32   (profile quick)
          epochs = 3                 (flag)

    A value changed after `build_config` (by the lesson's code) reads `set in code`."""
    sources, built = getattr(config, "sources", {}), getattr(config, "_built_values", {})
    rows = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if _plain(value) != _plain(field_default(f)):
            changed = f.name in built and _plain(value) != _plain(built[f.name])
            rows.append((f"{f.name} = {shown(value)}",
                         "set in code" if changed else sources.get(f.name, "set in code")))
    where = lesson_file(type(config))
    if not rows:
        return f"settings: the defaults of {where}"
    width = min(max(len(row) for row, _ in rows), SETTING_COLUMN)
    return "\n".join([f"settings that differ from {where}'s defaults:"]
                     + [f"  {row:<{width}}   ({source})" for row, source in rows])


def config_from_namespace(cls, namespace):
    """Build the config from parsed arguments (only the flags that were given count as overrides)."""
    values = dict(vars(namespace))
    config_file = values.pop("config_file", None)
    names = {f.name for f in dataclasses.fields(cls)}
    overrides = {k: v for k, v in values.items() if k in names}
    return build_config(cls, config_file=config_file, overrides=overrides)
