"""Progress bars for the long steps that are not training: archive extraction, image-feature extraction,
export and int8 calibration. Training has Keras' own bar; these use the same one (`keras.utils.Progbar`), so a
learner sees every step of several minutes move instead of a silent console.
"""


def progress(items, what, total=None, unit="item"):
    """Yield each of `items`, drawing a Keras progress bar headed by `what`.

    Args:
        items: any iterable; it is consumed lazily, so a generator or a tar archive works.
        what: the step's name, printed once above the bar (e.g. "extracting aclImdb_v1.tar.gz").
        total: the number of items when `items` has no length (None: the bar counts without a target).
        unit: what one item is, shown in the rate (Keras' `unit_name`).
    """
    import keras

    if total is None and hasattr(items, "__len__"):
        total = len(items)
    print(f"{what}:", flush=True)
    bar = keras.utils.Progbar(total, unit_name=unit)
    done = 0
    for item in items:
        yield item
        done += 1
        bar.update(done)
    if total is None or done != total:  # no target, or fewer items than said: end the bar's line
        bar.update(done, finalize=True)
