"""Search folders whose KerasTuner files were removed or edited, a search stopped by Ctrl-C, and the
refusals of the search command (one sentence each, nothing written)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_phone_csv

from common.errors import run_cli
from tuning import folder as folders
from tuning import report, search

ROOT = Path(__file__).resolve().parents[1]


def search_args(directory, data_root, *extra):
    return ["--task", "phone_price", "--profile", "smoke", "--data-dir", str(data_root),
            "--directory", str(directory), "--epochs", "2", "--verbose", "0", *extra]


def snapshot(folder):
    """Every file under `folder` with its bytes: what a refused command must leave as it was."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    """(data root, search root) of one finished two-trial search, made once: tests work on copies."""
    base = tmp_path_factory.mktemp("finished")
    data = base / "data"
    write_phone_csv(data / "mobile_price" / "train.csv", rows=400, seed=0)
    write_phone_csv(data / "mobile_price" / "test.csv", rows=50, seed=1, labelled=False, with_id=True)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(search.main, search_args(base / "tuning", data, "--max-trials", "2"))
    assert exit_info.value.code == 0
    return data, base / "tuning"


@pytest.fixture
def copied_search(tmp_path, finished_search):
    """(data root, search root, search folder) of a private copy of the finished search."""
    data, tuning = finished_search
    shutil.copytree(tuning, tmp_path / "tuning")
    return data, tmp_path / "tuning", tmp_path / "tuning" / "phone_price" / "random-smoke"


def remove_oracle(folder):
    (folder / "oracle.json").unlink()
    return "oracle.json is missing"


def remove_trial_folder(folder):
    shutil.rmtree(folder / "trial_1")
    return f"{folder / 'trial_1' / 'trial.json'} is missing (oracle.json lists trial 1)"


def remove_trial_file(folder):
    (folder / "trial_0" / "trial.json").unlink()
    return f"{folder / 'trial_0' / 'trial.json'} is missing (oracle.json lists trial 0)"


def empty_trial(folder):
    (folder / "trial_1" / "trial.json").write_text("{}\n")  # valid JSON, not a trial
    return f"{folder / 'trial_1' / 'trial.json'} is damaged (not a KerasTuner trial)"


def trial_as_list(folder):
    (folder / "trial_1" / "trial.json").write_text("[1, 2]\n")
    return f"{folder / 'trial_1' / 'trial.json'} is damaged (not a JSON object)"


def trial_of_another_folder(folder):
    shutil.copy(folder / "trial_0" / "trial.json", folder / "trial_1" / "trial.json")
    return f"{folder / 'trial_1' / 'trial.json'} is damaged (it holds trial 0"


def oracle_without_trial_order(folder):
    state = json.loads((folder / "oracle.json").read_text())
    del state["start_order"]
    (folder / "oracle.json").write_text(json.dumps(state))
    return f"{folder / 'oracle.json'} is damaged"


def oracle_without_seed_state(folder):
    state = json.loads((folder / "oracle.json").read_text())
    del state["seed_state"]  # KerasTuner's reload needs it: its RuntimeError becomes the sentence
    (folder / "oracle.json").write_text(json.dumps(state))
    return f"{folder / 'oracle.json'} is damaged"


DAMAGES = [remove_oracle, remove_trial_folder, remove_trial_file, empty_trial, trial_as_list,
           trial_of_another_folder, oracle_without_trial_order, oracle_without_seed_state]


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
def test_a_search_with_removed_or_damaged_keras_tuner_files_is_refused_untouched(copied_search, cli, damage):
    data, tuning, folder = copied_search
    fragment = damage(folder)
    before = snapshot(tuning)
    code, _, err = cli(search.main, search_args(tuning, data, "--max-trials", "3"))
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert "--overwrite" in err and "--name" in err and len(err.strip().splitlines()) == 1
    assert snapshot(tuning) == before


def test_a_damaged_oracle_of_a_search_from_the_other_mode_is_refused_untouched(copied_search, cli):
    """A folder with chief.json and no tuner0.json (a distributed search's) is resumed by reloading
    oracle.json in tuning/search.py, not by KerasTuner: a damaged oracle.json is refused the same way."""
    data, tuning, folder = copied_search
    (folder / "tuner0.json").rename(folder / "chief.json")
    fragment = oracle_without_seed_state(folder)
    before = snapshot(tuning)
    code, _, err = cli(search.main, search_args(tuning, data, "--max-trials", "3"))
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and snapshot(tuning) == before


@pytest.mark.parametrize("damage,readable", [(remove_oracle, True), (remove_trial_folder, True),
                                             (empty_trial, False)])
def test_report_of_a_search_with_removed_or_damaged_files(copied_search, cli, damage, readable):
    _, _, folder = copied_search
    damage(folder)
    code, _, err = cli(report.main, [str(folder)])
    assert "Traceback" not in err
    if readable:  # the report reads the trials only: it lists those still there
        assert code == 0 and len((folder / "trials.csv").read_text().strip().splitlines()) - 1 == len(
            list(folder.glob("trial_*/trial.json")))
    else:
        assert code == 2 and f"{folder / 'trial_1' / 'trial.json'} is not a readable" in err


def test_report_of_a_trial_file_that_is_a_folder(copied_search, cli):
    _, _, folder = copied_search
    (folder / "trial_1" / "trial.json").unlink()
    (folder / "trial_1" / "trial.json").mkdir()
    code, _, err = cli(report.main, [str(folder)])
    assert code == 2 and f"{folder / 'trial_1' / 'trial.json'} is not a readable" in err
    assert "Traceback" not in err


def test_a_kill_between_the_first_trials_two_saves_still_resumes(copied_search):
    """The first trial's trial.json is written just before the first oracle.json: no oracle, one RUNNING
    trial and no tuner file is a search killed there, not a damaged one."""
    _, _, folder = copied_search
    for path in ["oracle.json", "tuner0.json"]:
        (folder / path).unlink()
    shutil.rmtree(folder / "trial_1")
    trial = json.loads((folder / "trial_0" / "trial.json").read_text())
    (folder / "trial_0" / "trial.json").write_text(json.dumps({**trial, "status": "RUNNING"}))
    folders.check_readable(folder)  # no refusal


def test_a_refused_change_of_profile_names_it_once(copied_search, cli):
    data, tuning, folder = copied_search
    before = snapshot(tuning)
    code, _, err = cli(search.main, search_args(tuning, data, "--max-trials", "3", "--profile", "quick",
                                                "--name", "random-smoke"))
    assert code == 2 and "other settings" in err and snapshot(tuning) == before
    assert err.count("profile:") == 1 and 'profile: "smoke" then, "quick" now' in err


def test_differences_name_a_setting_of_the_search_and_of_its_base_config_once():
    before = {"profile": "smoke", "base_config": {"profile": "smoke", "epochs": 2}}
    now = {"profile": "quick", "base_config": {"profile": "quick", "epochs": 3}}
    assert folders.differences(before, now) == ['profile: "smoke" then, "quick" now', "epochs: 2 then, 3 now"]


@pytest.mark.parametrize("case,fragment", [("not utf-8", "UTF-8"), ("a folder", "folder")])
def test_a_bad_config_file_is_one_sentence(tmp_path, phone_root, cli, case, fragment):
    """tuning.search reads --config with the lessons' reader (common/config.py: read_json_config)."""
    config = tmp_path / "settings.json"
    if case == "a folder":
        config.mkdir()
    else:
        config.write_bytes(b'{"learning_rate": 0.01, "note": "caf\xe9"}\n')  # Latin-1, not UTF-8
    code, _, err = cli(search.main, search_args(tmp_path / "tuning", phone_root, "--config", str(config)))
    assert code == 2 and str(config) in err and fragment in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "tuning").exists()


def test_run_cli_says_how_the_interrupted_command_resumes(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    for kwargs, expected in [({}, "--run-id"), ({"interrupted": search.INTERRUPTED}, search.INTERRUPTED)]:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(interrupted, [], **kwargs)
        assert exit_info.value.code == 130 and expected in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_on_a_search_says_how_a_search_resumes(tmp_path, phone_root):
    """A real search process gets SIGINT once its first trial has begun (KerasTuner's "Running Trial #1" line,
    right before KerasTuner copies the callbacks inside a bare `except:` that wraps a KeyboardInterrupt into
    a FatalValueError): it names the search's way to resume, not a lesson's --run-id, and no traceback."""
    args = search_args(tmp_path / "tuning", phone_root, "--max-trials", "50", "--epochs", "50",
                       "--verbose", "1")
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err_file:  # a file, not a pipe: nothing blocks while stdout is read
        process = subprocess.Popen([sys.executable, "-m", "tuning.search", *args], cwd=ROOT, text=True,
                                   stdout=subprocess.PIPE, stderr=err_file,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        started = any("Running Trial #" in line for line in process.stdout)
        assert started, f"the search ended before it started: {stderr.read_text()[-3000:]}"
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=600)
    finally:
        process.kill()
        process.wait()
    err = stderr.read_text()
    assert process.returncode == 130, err[-3000:]
    assert search.INTERRUPTED in err and "--run-id" not in err and "Traceback" not in err


@pytest.mark.slow
def test_a_distributed_search_whose_chief_refuses_the_folder_stops_its_workers(copied_search):
    """The workers wait for the chief's oracle: once the chief has refused, they are stopped instead of
    waiting for --timeout (or for ever)."""
    data, tuning, folder = copied_search
    remove_oracle(folder)
    before = snapshot(tuning)
    result = subprocess.run(
        [sys.executable, "-m", "tuning.distributed", "--workers", "1", "--timeout", "600", "--",
         *search_args(tuning, data, "--max-trials", "3")],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 2 and "oracle.json is missing" in result.stderr, result.stderr[-3000:]
    assert "chief process ended with the error above" in result.stderr
    assert "did not finish within" not in result.stderr and "Traceback" not in result.stderr
    assert snapshot(tuning) == before
