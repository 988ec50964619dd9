import argparse
import dataclasses
import importlib
import json
import re
import typing
from pathlib import Path

import pytest

from common.config import TrainConfig, add_config_arguments, build_config, config_from_namespace
from common.errors import UserError


@dataclasses.dataclass
class DemoConfig(TrainConfig):
    TASK: typing.ClassVar[str] = "demo"
    PROFILES: typing.ClassVar[dict] = {"smoke": dict(epochs=2, width=4), "quick": dict(epochs=10),
                                       "full": dict(epochs=100, width=64)}
    width: int = 16
    units: tuple[int, ...] = (8, 4)
    activation: str = dataclasses.field(default="relu", metadata={"registry": "activation"})
    dropout: typing.Optional[float] = None
    batch_norm: bool = False


def parse(argv):
    parser = add_config_arguments(argparse.ArgumentParser(), DemoConfig)
    return config_from_namespace(DemoConfig, parser.parse_args(argv))


def test_precedence_defaults_then_profile_then_json_then_flags(tmp_path):
    config_file = tmp_path / "best.json"
    config_file.write_text(json.dumps({"epochs": 7, "width": 32, "activation": "tanh"}))
    assert parse([]).epochs == 10  # quick profile over the default 20
    assert parse(["--profile", "full"]).width == 64
    config = parse(["--profile", "full", "--config", str(config_file), "--width", "5"])
    assert (config.epochs, config.width, config.activation) == (7, 5, "tanh")


def test_json_may_name_the_profile_and_the_flag_wins(tmp_path):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"profile": "smoke", "task": "demo"}))
    assert parse(["--config", str(config_file)]).epochs == 2
    assert parse(["--config", str(config_file), "--profile", "full"]).epochs == 100


def test_flag_types_tuples_bools_and_none():
    config = parse(["--units", "64,32,16", "--batch-norm", "--dropout", "none", "--seed", "3"])
    assert config.units == (64, 32, 16) and config.batch_norm is True and config.dropout is None
    assert config.seed == 3
    assert parse(["--units", ""]).units == ()
    assert parse(["--no-batch-norm"]).batch_norm is False


def test_a_run_config_round_trips_but_not_its_location(tmp_path):
    original = build_config(DemoConfig, profile="smoke", overrides={"width": 3, "output_dir": "elsewhere",
                                                                  "run_id": "r1"})
    original.save(tmp_path / "config.json")
    again = build_config(DemoConfig, config_file=tmp_path / "config.json")
    assert again.width == 3 and again.epochs == 2 and again.profile == "smoke"
    assert again.output_dir == "runs" and again.run_id is None


@pytest.mark.parametrize("argv,fragment", [
    (["--epochs", "three"], "--epochs expects a whole number"),
    (["--epochs", "1e20"], "--epochs expects a whole number"),
    (["--epochs", "3.0"], "--epochs expects a whole number"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--epochs", str(2**31)], "--epochs must be from 0 to 2147483647"),
    (["--activation", "relux"], "valid names: relu"),
    (["--units", "8,x"], "comma-separated whole numbers"),
    (["--units", "8,-1"], "--units must be from 0 to"),
    (["--learning-rate", "-1"], "--learning-rate must be greater than 0"),
    (["--learning-rate", "nan"], "--learning-rate expects a finite number"),
    (["--momentum", "5"], "--momentum must be in [0, 1)"),
    (["--step-epochs", "0"], "--step-epochs must be at least 1"),
    (["--schedule", "multistep"], "needs --milestones"),
    (["--milestones", "60,30"], "--milestones must be increasing"),
    (["--warmup-epochs", "11"], "--warmup-epochs (11) must not exceed --epochs (10)"),
    (["--seed", "-1"], "--seed must be from 0 to 4294967295"),
    (["--seed", str(2**32)], "--seed must be from 0 to 4294967295"),
    (["--verbose", "3"], "--verbose must be in [0, 2]"),
])
def test_bad_flag_values_raise_one_clear_sentence(argv, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        parse(argv)


def test_the_largest_seed_is_accepted():
    assert parse(["--seed", str(2**32 - 1)]).seed == 2**32 - 1


@pytest.mark.parametrize("values,fragment", [
    ({"epochs": True}, "'epochs' in .* expects a whole number, got true"),
    ({"epochs": 1e20}, "'epochs' in .* expects a whole number, got 1e\\+20"),
    ({"epochs": 2.5}, "expects a whole number"),
    ({"units": [8, 1.5]}, "comma-separated whole numbers"),
    ({"units": 8}, "comma-separated whole numbers"),
    ({"learning_rate": False}, "expects a number, got false"),
    ({"activation": 3}, "expects a name, got 3"),
    ({"batch_norm": "maybe"}, "expects bool"),
    ({"jit_compile": "maybe"}, "--jit-compile must be one of auto, true, false"),
])
def test_json_values_of_the_wrong_type_are_refused(tmp_path, values, fragment):
    (tmp_path / "c.json").write_text(json.dumps(values))
    with pytest.raises(UserError, match=fragment):
        build_config(DemoConfig, config_file=tmp_path / "c.json")


@pytest.mark.parametrize("run_id", ["../escaped", "/abs", ".", "..", "a/b", "sp ace", "x" * 201,
                                    "new\nline", "tab\t"])
def test_a_run_id_must_be_a_plain_name(run_id):
    with pytest.raises(UserError, match="--run-id must be a plain name"):
        build_config(DemoConfig, overrides={"run_id": run_id})


@pytest.mark.parametrize("run_id", ["r1", "2024-01-01_seed.3", "..hidden", "x" * 200])
def test_plain_run_ids_are_accepted(run_id):
    assert build_config(DemoConfig, overrides={"run_id": run_id}).run_id == run_id


def test_folder_settings_must_be_folders(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="--output-dir .* is a file"):
        build_config(DemoConfig, overrides={"output_dir": str(tmp_path / "file")})
    with pytest.raises(UserError, match="--data-dir .* is not a folder"):
        build_config(DemoConfig, overrides={"data_dir": str(tmp_path / "missing")})
    assert build_config(DemoConfig, overrides={"output_dir": str(tmp_path / "new")}).output_dir


def test_json_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_config(DemoConfig, config_file=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        build_config(DemoConfig, config_file=tmp_path / "bad.json")
    (tmp_path / "typo.json").write_text(json.dumps({"widht": 3}))
    with pytest.raises(UserError, match="unknown setting 'widht'.*width"):
        build_config(DemoConfig, config_file=tmp_path / "typo.json")
    (tmp_path / "other.json").write_text(json.dumps({"task": "imdb"}))
    with pytest.raises(UserError, match="for task 'imdb'"):
        build_config(DemoConfig, config_file=tmp_path / "other.json")


def test_unknown_profile_is_rejected_by_argparse_with_exit_2():
    with pytest.raises(SystemExit) as exit_info:
        parse(["--profile", "huge"])
    assert exit_info.value.code == 2


RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.json"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_every_recipe_is_a_valid_config_for_its_task(recipe):
    values = json.loads(recipe.read_text())
    module = importlib.import_module(f"tasks.{values['task']}")
    config_class, = {value for value in vars(module).values()
                     if isinstance(value, type) and getattr(value, "TASK", None) == values["task"]}
    config = build_config(config_class, config_file=recipe)
    settings = {k: v for k, v in values.items() if not k.startswith("_") and k not in ("task", "profile")}
    assert settings and all(getattr(config, k) == (tuple(v) if isinstance(v, list) else v)
                            for k, v in settings.items())


def test_a_lesson_that_only_changes_a_default_keeps_the_shared_help():
    """Issue 17.4: `epochs: int = 16` in a lesson re-declares the field without metadata; --help must still
    explain it (and the registry check must still apply)."""
    import argparse

    from common.config import add_config_arguments, field_metadata
    from tasks.cifar10 import Cifar10Config

    epochs = Cifar10Config.__dataclass_fields__["epochs"]
    assert not epochs.metadata and field_metadata(Cifar10Config, epochs)["help"] == "maximum number of epochs"
    text = add_config_arguments(argparse.ArgumentParser(), Cifar10Config).format_help()
    assert "maximum number of epochs" in text and "decoupled weight decay" in text


@dataclasses.dataclass
class RenamedConfig(TrainConfig):
    TASK: typing.ClassVar[str] = "demo"
    max_images: typing.Optional[int] = dataclasses.field(default=None, metadata=dict(
        help="images per split", aliases=("limit",)))
    reference: bool = dataclasses.field(default=True, metadata=dict(help="train the reference",
                                                                    aliases=("baseline",)))


def parse_renamed(argv):
    parser = add_config_arguments(argparse.ArgumentParser(), RenamedConfig)
    return config_from_namespace(RenamedConfig, parser.parse_args(argv))


def test_an_old_name_still_sets_the_renamed_field_from_a_flag_json_and_overrides(tmp_path):
    assert parse_renamed(["--limit", "40", "--no-baseline"]).max_images == 40
    assert parse_renamed(["--no-baseline"]).reference is False
    assert parse_renamed(["--baseline"]).reference is True
    assert parse_renamed(["--max-images", "7", "--no-reference"]).max_images == 7
    old_run = tmp_path / "config.json"  # written by a version that had the old names
    old_run.write_text(json.dumps({"task": "demo", "limit": 12, "baseline": False}))
    config = build_config(RenamedConfig, config_file=old_run)
    assert (config.max_images, config.reference) == (12, False)
    assert build_config(RenamedConfig, overrides={"limit": 3}).max_images == 3  # --set limit=3
    config.save(tmp_path / "again.json")  # a run written now records the new name only
    saved = json.loads((tmp_path / "again.json").read_text())
    assert saved["max_images"] == 12 and "limit" not in saved and "baseline" not in saved


def test_help_shows_the_new_name_only_and_errors_name_the_new_flag():
    text = add_config_arguments(argparse.ArgumentParser(), RenamedConfig).format_help()
    assert "--max-images" in text and "--no-reference" in text
    assert "--limit" not in text and "baseline" not in text
    with pytest.raises(UserError, match="--max-images expects a whole number"):
        parse_renamed(["--limit", "many"])


@pytest.mark.parametrize("task,old,new,value", [
    ("cifar10", ["--val-size", "100"], "val_images", 100),
    ("cifar10", ["--limit", "200"], "max_images", 200),
    ("captioning", ["--limit", "5"], "max_images", 5),
    ("phone_price", ["--no-baseline"], "linear_baseline", False),
    ("imdb", ["--no-baseline"], "ngram_reference", False),
])
def test_the_lessons_old_flags_still_work(task, old, new, value):
    """Issue 17.6: renamed settings keep their old flag (and JSON key); --help shows the new name."""
    module = importlib.import_module(f"tasks.{task}")
    config_class, = {v for v in vars(module).values()
                     if isinstance(v, type) and getattr(v, "TASK", None) == task}
    parser = add_config_arguments(argparse.ArgumentParser(), config_class)
    config = config_from_namespace(config_class, parser.parse_args(["--profile", "smoke", *old]))
    assert getattr(config, new) == value
    text = parser.format_help()
    assert f"--{new.replace('_', '-')}" in text and old[0] not in text


def test_cifar10_quick_profile_gives_the_fast_net_its_airbench_settings_and_only_it():
    """Issue 23.4: the quick profile of the fast net is airbench94's recipe on a CPU budget; other models, a
    recipe file, flags and the tuner's base (`model_profiles=False`) are not changed by it."""
    from tasks.cifar10 import Cifar10Config

    fast = build_config(Cifar10Config)
    assert (fast.model, fast.whiten, fast.lookahead, fast.epochs, fast.widths) == (
        "fast", True, True, 10, (64, 256, 256))
    assert fast.mixed_precision and fast.mixed_dtype == "auto" and fast.val_images == 5000
    resnet = build_config(Cifar10Config, overrides=dict(model="resnet20"))
    assert (resnet.whiten, resnet.bn_scale, resnet.lookahead, resnet.epochs) == (False, True, False, 16)
    assert build_config(Cifar10Config, overrides=dict(epochs=3, whiten=False)).epochs == 3
    recipe = build_config(Cifar10Config, config_file="recipes/cifar10_airbench94.json")
    assert (recipe.epochs, recipe.val_images, recipe.whiten_bias_epochs) == (10, 0, 3)
    course = build_config(Cifar10Config, config_file="recipes/cifar10_course_cnn.json")
    assert (course.model, course.bn_scale, course.lookahead, course.mixed_precision) == (
        "course_cnn", True, False, False)
    base = build_config(Cifar10Config, model_profiles=False)
    assert (base.model, base.whiten, base.epochs, base.widths) == ("fast", False, 16, (32, 96, 192))
    smoke = build_config(Cifar10Config, profile="smoke", overrides=dict(model="fast"))
    assert not smoke.whiten and not smoke.mixed_precision  # the smoke profile stays seconds-small
