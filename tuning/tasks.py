"""What the tuner needs to know about each task: its config class, loader, factory, splits and space.

A lesson joins the tuner with one line: its name in LESSONS, its module declaring what the tuner needs in a
`TUNING` dict (see `from_lesson`). Lessons with needs of their own (IMDB's vocabulary, a models mapping to
compare) keep an entry in TASKS built here. Everything else (search, report, distribution) is shared.
"""

import dataclasses
import functools
from collections.abc import Callable

from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    config_cls: type
    load_data: Callable  # config -> the data set's splits: its datasets/ module's `load`
    build_model: Callable  # (config, data) -> keras.Model (a models/ factory)
    make_datasets: Callable  # (config, data) -> common.training.TrainingData
    space: Callable  # hp -> {config field: value}
    comparisons: dict  # --compare NAME -> the values compared


def _phone_price():
    from datasets import mobile_price
    from models import build_fnn
    from tasks import phone_price
    from tuning import spaces

    return TaskSpec("phone_price", phone_price.PhonePriceConfig, mobile_price.load, build_fnn,
                    phone_price.make_datasets, spaces.phone_price, spaces.COMPARISONS)


def _imdb():
    from common.training import TrainingData
    from datasets import imdb as imdb_data
    from models.text import build_text_model
    from tasks import imdb
    from tuning import spaces

    def build_model(config, data):
        # The vocabulary is adapted on the training reviews once, at the first build (the objective check
        # builds one before any trial); the space leaves its size and the sequence length alone.
        if data.vectorizer is None:
            data.vectorizer = imdb_data.adapt_vectorizer(data.train, config.vocabulary_size,
                                                         config.sequence_length)
        return build_text_model(config, data)

    def make_datasets(config, data):
        return TrainingData(data.train, data.val, imdb.steps_per_epoch(data.train), test=data.test)

    comparisons = {name: spaces.COMPARISONS[name] for name in ("initializer", "optimizer", "dropout")}
    comparisons["model"] = spaces.imdb_models(compare=True)
    return TaskSpec("imdb", imdb.ImdbConfig, imdb_data.load, build_model, make_datasets, spaces.imdb,
                    comparisons)


def _cifar10():
    from datasets import cifar10 as cifar10_data
    from models.cnn import build_cnn
    from tasks import cifar10
    from tuning import spaces

    comparisons = dict(spaces.COMPARISONS, model=spaces.cifar10_models(compare=True))
    return TaskSpec("cifar10", cifar10.Cifar10Config, cifar10_data.load, build_cnn, cifar10.make_datasets,
                    spaces.cifar10, comparisons)


def from_lesson(name):
    """The TaskSpec of a lesson whose module `tasks/<name>.py` declares what the tuner needs:

        TUNING = dict(config_cls=NewConfig, load_data=new_data.load, build_model=build_new,
                      make_datasets=make_datasets, space=None)

    `space` (optional) is hp -> {config field: value} for the lesson's own hyperparameters; the shared space
    (tuning/spaces.py: shared) and `--compare` choices are added for every config field the lesson has.
    """
    import importlib

    from tuning import spaces

    declared = dict(importlib.import_module(f"tasks.{name}").TUNING)
    own = declared.pop("space", None)
    fields = {f.name for f in dataclasses.fields(declared["config_cls"])}
    # The shared hyperparameters (read from the shared space itself) less those the lesson's config lacks.
    skip = {hp["config"]["name"] for hp in spaces.describe(spaces.shared)} - fields

    def space(hp):
        return {**spaces.shared(hp, skip=skip), **(own(hp) if own else {})}

    comparisons = {choice: values for choice, values in spaces.COMPARISONS.items() if choice in fields}
    return TaskSpec(name, space=space, comparisons=comparisons, **declared)


# Lessons that declare TUNING in their module: adding a lesson's name here is all it takes to tune it.
LESSONS = ()
TASKS = {"phone_price": _phone_price, "imdb": _imdb, "cifar10": _cifar10,
         **{name: functools.partial(from_lesson, name) for name in LESSONS}}


def get(name):
    if name not in TASKS:
        raise UserError(f"unknown task '{name}'; tasks with a search space: {', '.join(TASKS)}.")
    return TASKS[name]()
