import argparse
import dataclasses
import importlib
import json
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
    (["--epochs", "three"], "--epochs expects int"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--activation", "relux"], "valid names: relu"),
    (["--units", "8,x"], "comma-separated integers"),
    (["--learning-rate", "-1"], "--learning-rate must be positive"),
    (["--schedule", "multistep"], "needs --milestones"),
])
def test_bad_flag_values_raise_one_clear_sentence(argv, fragment):
    with pytest.raises(UserError, match=fragment.replace("-", r"\-")):
        parse(argv)


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
