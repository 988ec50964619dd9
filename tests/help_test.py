"""Issue 35.2: a lesson's `--help` answers "what will this run do", and a run says what it changed.

Every flag sits in a section (data, model, training, run), has a help text and shows its default with the
profiles that change it; at start a run prints the settings that differ from the lesson file's defaults,
each with its source (a profile, the --config file or a flag)."""

import contextlib
import dataclasses
import importlib
import io
import json
import re
import typing
from pathlib import Path

import pytest

from common.cli import task_main
from common.config import GROUPS, TrainConfig, build_config, field_metadata, settings_block, setting

ROOT = Path(__file__).resolve().parents[1]


from run_all import available_tasks as lessons, config_class  # noqa: E402  (the lessons run_all runs)


def help_text(main, monkeypatch):
    """What `main(["--help"])` prints, in-process (argparse exits 0 after printing)."""
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    return out.getvalue()


def flag_entries(text):
    """{flag: its help on one line} for every flag listed after the description: an entry starts with two
    spaces and a dash; its help may wrap onto lines indented further."""
    entries, flag = {}, None
    for line in text.split("\noptions:\n", 1)[1].splitlines():
        if re.match(r"  -", line):
            invocation, _, rest = line.strip().partition("  ")
            flag = invocation.split(",")[0].split(" ")[0]
            entries[flag] = rest.strip()
        elif flag and re.match(r"   +\S", line):
            entries[flag] = f"{entries[flag]} {line.strip()}".strip()
        else:
            flag = None
    return entries


def ungrouped(cls):
    """The fields of a config class without a help text or a section of --help."""
    return [f.name for f in dataclasses.fields(cls)
            if field_metadata(cls, f).get("group") not in GROUPS or not field_metadata(cls, f).get("help")]


@pytest.mark.parametrize("task", lessons())
def test_every_field_of_a_lesson_has_a_help_text_and_a_section(task):
    assert ungrouped(config_class(task)) == []


@pytest.mark.parametrize("task", lessons())
def test_every_flag_in_help_has_a_help_text_a_default_and_a_section(task, monkeypatch):
    module = importlib.import_module(f"tasks.{task}")
    text = help_text(module.main, monkeypatch)
    entries = flag_entries(text)
    entries.pop("-h")
    cls = config_class(task)
    flags = {f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(cls)}
    shown = {flag.replace("--[no-]", "--") for flag in entries}
    assert shown == flags | {"--config"}
    for flag, words in entries.items():
        helped, default, _ = words.partition("(default: ")
        assert default and helped.strip(), f"{task} {flag}: {words!r}"
    assert all(f"\n{title}:\n" in text for title in GROUPS.values())
    assert "other settings:" not in text  # the section of fields that name none
    assert len(text.splitlines()[0]) < 100  # one usage line, not a list of every flag


def test_help_shows_the_defaults_each_profile_and_model_profile_changes(monkeypatch):
    from tasks import cifar10, phone_price

    entries = flag_entries(help_text(phone_price.main, monkeypatch))
    assert entries["--epochs"] == "maximum number of epochs (default: 150; smoke: 8)"
    assert entries["--steps-per-execution"].endswith("(default: 1; quick (plain run): 32; full: 32)")
    assert entries["--[no-]tensorboard"] == "write TensorBoard logs (default: true; smoke: false)"
    assert "one of: relu, " in entries["--activation"] and entries["--activation"].endswith("(default: gelu)")
    assert entries["--hidden-units"].endswith("(default: 64)") and "(default: none)" in entries["--config"]
    entries = flag_entries(help_text(cifar10.main, monkeypatch))
    assert entries["--epochs"].endswith("(default: 16; smoke: 2; quick for fast (plain run): 10; full: 10)")
    assert entries["--widths"].endswith("(default: 32,96,192; quick for fast (plain run): 64,256,256; "
                                        "full: 64,256,256)")


def test_a_field_without_a_section_is_found():
    @dataclasses.dataclass
    class Sloppy(TrainConfig):
        units: int = 16
        width: int = setting(8, "modle", "a typo in the section")
        depth: int = setting(2, "model", "")

    assert ungrouped(Sloppy) == ["units", "width", "depth"]


@dataclasses.dataclass
class DemoConfig(TrainConfig):
    TASK: typing.ClassVar[str] = "demo"
    PROFILES: typing.ClassVar[dict] = {"smoke": dict(epochs=2, verbose=0, width=4), "quick": {},
                                       "full": dict(epochs=100)}
    MODEL_PROFILES: typing.ClassVar[dict] = {"quick": {"wide": dict(width=64)}}
    model: str = setting("wide", "model", "the network", choices=("wide", "narrow"))
    width: int = setting(16, "model", "units of the hidden layer")
    dropout: float = setting(0.0, "model", "dropout after the hidden layer")


def block_lines(config):
    """{setting: source} from `settings_block`: `  epochs = 3   (flag)` -> {"epochs = 3": "flag"}."""
    header, *rows = settings_block(config).splitlines()
    assert header.startswith("settings that differ from ") and header.endswith("'s defaults:")
    return dict(re.fullmatch(r"  (.+?) +\((.+)\)", row).groups() for row in rows)


def test_the_settings_block_names_the_profile_the_config_file_and_the_flag(tmp_path):
    recipe = tmp_path / "settings.json"
    recipe.write_text(json.dumps({"task": "demo", "dropout": 0.25, "width": 32, "output_dir": "elsewhere"}))
    config = build_config(DemoConfig, config_file=recipe, overrides={"profile": "smoke", "epochs": 3})
    assert block_lines(config) == {
        "profile = smoke": "flag", "epochs = 3": "flag", "verbose = 0": "profile smoke",
        "width = 32": "settings.json", "dropout = 0.25": "settings.json"}
    assert str(tmp_path) not in settings_block(config)  # the file's name, not where it lies
    config.save(tmp_path / "config.json")  # the sources are no setting: not in config.json
    assert "sources" not in json.loads((tmp_path / "config.json").read_text())
    assert "sources" not in {f.name for f in dataclasses.fields(config)} | set(config.to_dict())


def test_the_settings_block_names_a_model_profile_and_the_defaults():
    assert block_lines(build_config(DemoConfig, overrides={"epochs": 3})) == {
        "width = 64": "profile quick for wide", "epochs = 3": "flag"}
    assert block_lines(build_config(DemoConfig, overrides={"model": "narrow"})) == {"model = narrow": "flag"}
    config = build_config(DemoConfig, overrides={"width": 16})  # the flag undoes the model profile
    assert settings_block(config) == f"settings: the defaults of {DemoConfig.__module__.replace('.', '/')}.py"
    config.width, config.run_id = 8, "r1"  # changed by the lesson's code after the config was built
    assert block_lines(config) == {"width = 8": "set in code", "run_id = r1": "set in code"}


def test_a_lesson_run_prints_the_block_before_it_trains(capsys):
    from tasks.cifar10 import Cifar10Config

    printed = []

    def train(config):
        printed.append(capsys.readouterr().out)  # what the run printed before training started
        return 0

    assert task_main(DemoConfig, train, "demo")(["--epochs", "3", "--profile", "smoke"]) == 0
    assert "settings that differ from" in printed[0] and "  epochs = 3" in printed[0]
    lines = block_lines(build_config(Cifar10Config, overrides={"epochs": 3}))
    assert lines["whiten = true"] == "profile quick for fast" and lines["epochs = 3"] == "flag"
