"""Model factories: plain functions from a config (and what the data says: shapes, classes) to a keras.Model.

Tasks, the tuner and the framework comparison all build their models here, so a network is defined once.
"""

from models.fnn import build_fnn, build_softmax_regression

__all__ = ["build_fnn", "build_softmax_regression"]
