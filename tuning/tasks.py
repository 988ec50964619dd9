"""What the tuner needs to know about each task: its config class, loader, factory, splits and space.

A task joins the tuner by adding one entry to TASKS; everything else (search, report, distribution) is
shared.
"""

import dataclasses
from typing import Callable

from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    config_cls: type
    load_data: Callable  # config -> data
    build_model: Callable  # (config, data) -> keras.Model (a models/ factory)
    make_datasets: Callable  # (config, data) -> (train, val, test, steps_per_epoch)
    space: Callable  # hp -> {config field: value}


def _phone_price():
    from models import build_fnn
    from tasks import phone_price
    from tuning import spaces

    return TaskSpec("phone_price", phone_price.PhonePriceConfig, lambda c: phone_price.load_data(c)[0],
                    build_fnn, phone_price.make_datasets, spaces.phone_price)


TASKS = {"phone_price": _phone_price}


def get(name):
    if name not in TASKS:
        raise UserError(f"unknown task '{name}'; tasks with a search space: {', '.join(TASKS)}.")
    return TASKS[name]()
