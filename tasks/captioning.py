"""Image captioning: a CNN looks, an LSTM talks, and attention decides where to look for each word.

What you will learn: the course's "show, attend and tell" model (Xu et al. 2015, models/captioning.py). The
encoder, EfficientNet-Lite0 with ImageNet weights (ported from the PyTorch release), turns each 224x224 image
into 7x7 = 49 feature vectors; it is frozen, so the features are computed once and cached, and training runs
only the decoder (`--encoder cnn` trains a small CNN with it instead). The decoder, word embedding + LSTM
(`--cell gru`) with Bahdanau attention, scores the 49 positions against its state at every word, averages
the features by those weights and predicts the next word; `--decoder transformer` puts a small Transformer
decoder in its place. Training: teacher forcing, cross-entropy on real words only (padding masked), the doubly
stochastic attention penalty, Adam with gradient clipping. Decoding: greedy and beam search, chosen on
validation, scored on test with the COCO caption metrics (CIDEr-D, ...); figures samples.png, attention_*.png.
The data: Flickr8k (8,091 images with 5 captions each, the official 6000/1000/1000 split); `--dataset shapes`
(images of two coloured shapes drawn by this project, where attention can be checked); `--dataset folder`.

Run it:

    python -m tasks.captioning                           # the default run: quick profile, Flickr8k
    python -m tasks.captioning --dataset shapes          # shapes, small CNN encoder
    python -m tasks.captioning --profile smoke           # seconds
    python -m tasks.captioning caption --run runs/captioning/<run-id> photo.jpg

How long: under half an hour on a 2-core CPU (the features are cached after the first run).
Expected result: the 'Captioning' section of benchmarks/RESULTS.md (each decoding's caption scores, with date,
machine and commit); the lesson page (`make pages`) shows the default run's rows at the top.
"""

# %% Setup
import dataclasses
import json
import sys
import typing
from pathlib import Path

if __package__ in (None, ""):  # `python tasks/captioning.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run, task_main

quiet_tensorflow()

import numpy as np  # noqa: E402

from common import export, plots, runs, trained, training  # noqa: E402
from common.config import TrainConfig, build_config, setting, whole_number  # noqa: E402
from common.errors import UserError, printable  # noqa: E402
from common.images import check_images  # noqa: E402
from datasets import flickr8k, shapes  # noqa: E402
from models import encoders  # noqa: E402
from models.captioning import (CELLS, DECODERS, MaskedCrossentropy, build_captioner,  # noqa: E402
                               generate, masked_accuracy)

# %% The data sets
# Flickr8k (photos with five captions each), the shapes images this project draws (where attention can be
# checked against the shape being named), or any folder of images with a captions file.
DATASETS = ("flickr8k", "shapes", "folder")
# The smallest input keras.applications' ImageNet models accept: 32 pixels, InceptionV3 75.
MIN_PRETRAINED_SIZE = {"InceptionV3": 75}


# %% Settings
# Every field is a flag and a key of a `--config` file; `smoke` draws 400 small shapes images.
@dataclasses.dataclass
class CaptioningConfig(TrainConfig):
    TASK: typing.ClassVar[str] = "captioning"
    PROFILES: typing.ClassVar[dict] = {
        "smoke": dict(dataset="shapes", shapes_count=400, shapes_size=32, epochs=8, batch_size=32,
                      learning_rate=3e-3, embedding_dim=32, units=96, attention_units=32, feature_units=64,
                      cnn_widths=(16, 32, 32), dropout=0.0, feature_dropout=0.0, beam_size=2, samples=4,
                      attention_maps=1, tensorboard=False, export=False, verbose=0),
        "quick": dict(),
        "full": dict(epochs=20, early_stopping=4),
    }

    dataset: str = setting("flickr8k", "data", "data set", choices=DATASETS)
    export: bool = setting(
        True, "run", "export the captioner (features and caption -> next-word logits) as SavedModel, ONNX "
        "and LiteRT (model.export) and compare each file's outputs with Keras' on the test split "
        "(exports.md)")
    images: typing.Optional[str] = setting(
        None, "data", "--dataset folder: the image folder", portable=False, metavar="DIR")
    captions: typing.Optional[str] = setting(
        None, "data", "--dataset folder: a Flickr8k token file or an image,caption CSV", portable=False,
        metavar="FILE")
    encoder: str = setting(
        "auto", "model", "cnn (trained with the decoder), efficientnet_lite0 (pretrained, offline) or a "
        "keras.applications name such as ResNet50 (online); auto = cnn for shapes, otherwise "
        "efficientnet_lite0 when its weights are cached or the PyTorch extras can port them, else "
        "EfficientNetB0 (models/encoders.py: resolve_auto)")
    image_size: typing.Optional[int] = setting(
        None, "data", "images are resized to this square size (none: 224 for a pretrained encoder, else "
        "--shapes-size for shapes, 128 otherwise)")
    shapes_count: int = setting(4000, "data", "--dataset shapes: number of images")
    shapes_size: int = setting(64, "data", "--dataset shapes: image side in pixels")
    cnn_widths: tuple[int, ...] = setting(
        (32, 64, 128), "model", "--encoder cnn: filters of each conv block (each block halves the grid)")
    decoder: str = setting(
        "rnn", "model", "rnn: a recurrent cell (--cell) with Bahdanau attention, as in Show, Attend and "
        "Tell; transformer: a small Transformer decoder (--blocks, --heads)", choices=DECODERS)
    cell: str = setting("lstm", "model", "--decoder rnn: the cell, one of: %(choices)s", choices=CELLS)
    embedding_dim: int = setting(
        256, "model", "size of each word's embedding in the decoder (the transformer's width)")
    units: int = setting(384, "model", "--decoder rnn: cell units")
    attention_units: int = setting(256, "model", "--decoder rnn: units of the additive (Bahdanau) attention")
    blocks: int = setting(2, "model", "--decoder transformer: decoder blocks")
    heads: int = setting(4, "model", "--decoder transformer: attention heads (they split --embedding-dim)")
    feed_forward_units: int = setting(
        1024, "model", "--decoder transformer: hidden units of each feed-forward net")
    feature_units: int = setting(384, "model", "encoder features are projected to this")
    feature_dropout: float = setting(0.2, "model", "dropout on the projected encoder features (0 = off)")
    dropout: float = setting(
        0.5, "model", "decoder dropout: before the next-word layer (rnn); on the embeddings, every "
        "sub-layer's output and the attention weights (transformer)")
    attention_penalty: float = setting(
        1.0, "training", "--decoder rnn: weight of the doubly stochastic attention penalty (0 = off)")
    min_count: int = setting(5, "data", "words seen fewer times become [UNK]")
    max_words: int = setting(16, "data", "captions are cut to this many words")
    beam_size: int = setting(3, "training", "captions beam search keeps at each step (1 = greedy decoding)")
    length_penalty: float = setting(
        0.0, "training", "beam search ranks finished captions by log p / length**this")
    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 1e-3
    clipnorm: typing.Optional[float] = 5.0
    val_fraction: float = setting(
        0.1, "data", "--dataset folder: share of the images held out for validation")
    test_fraction: float = setting(0.1, "data", "--dataset folder: share of the images held out for the test")
    split_seed: int = setting(
        42, "data", "seed of the train/validation/test split of shapes and folder images")
    max_images: typing.Optional[int] = setting(
        None, "data", "use only this many images per split (smoke tests)", aliases=("limit",))
    samples: int = setting(8, "run", "test images shown in samples.png")
    attention_maps: int = setting(4, "run", "test images with attention maps")

    RANGES: typing.ClassVar[dict] = {
        "cnn_widths": ">= 1", "embedding_dim": ">= 1", "units": ">= 1", "attention_units": ">= 1",
        "feature_units": ">= 1", "blocks": ">= 1", "heads": ">= 1", "feed_forward_units": ">= 1",
        "feature_dropout": "[0, 1)", "dropout": "[0, 1)",
        "attention_penalty": ">= 0", "min_count": ">= 1", "max_words": ">= 1", "beam_size": ">= 1",
        "val_fraction": "(0, 1)", "test_fraction": "(0, 1)", "max_images": ">= 1", "samples": ">= 1",
        "attention_maps": ">= 0", "image_size": ">= 1", "shapes_count": ">= 1",
        # Two shapes side by side, each with a margin, need about 15 pixels.
        "shapes_size": ">= 16"}

    def validate(self):
        super().validate()  # types, choices and RANGES of every field
        if self.encoder not in ("auto", "cnn", *encoders.PRETRAINED):
            raise UserError(f"unknown encoder '{self.encoder}'; valid: auto, cnn, "
                            f"{', '.join(encoders.PRETRAINED)}.")
        if self.decoder == "transformer" and self.embedding_dim % self.heads:
            raise UserError(f"--embedding-dim ({self.embedding_dim}) must be a multiple of --heads "
                            f"({self.heads}): the heads split it.")
        if self.val_fraction + self.test_fraction >= 1:
            raise UserError(f"--val-fraction ({self.val_fraction:g}) and --test-fraction "
                            f"({self.test_fraction:g}) must sum to less than 1, leaving images to train on.")
        if self.dataset == "shapes" and min(round(self.shapes_count * f) for f in
                                            (self.val_fraction, self.test_fraction)) < 1:
            raise UserError(f"--shapes-count {self.shapes_count} leaves no validation or test image; "
                            "use at least 10 images.")
        size, encoder = self.resolved_image_size(), self.resolved_encoder()
        smallest = 2 ** len(self.cnn_widths) if encoder == "cnn" else MIN_PRETRAINED_SIZE.get(encoder, 32)
        if size < smallest:
            what = (f"each of the {len(self.cnn_widths)} --cnn-widths blocks halves the image"
                    if encoder == "cnn" else f"the pretrained {encoder} encoder needs it")
            raise UserError(f"--image-size must be at least {smallest} ({what}), got {size}.")

    def resolved_encoder(self):
        if self.encoder != "auto":
            return self.encoder
        return "cnn" if self.dataset == "shapes" else encoders.resolve_auto()[0]

    def resolved_image_size(self):
        if self.image_size:
            return self.image_size
        if self.resolved_encoder() != "cnn":
            return 224
        return self.shapes_size if self.dataset == "shapes" else 128


# %% Data: captions, splits and image features
# Captions are lower-cased, split into words and framed by <start>/<end>
# (`datasets/flickr8k.py: vectorize`). With a frozen pretrained encoder the image features are computed once
# and cached (`models/encoders.py: cached_features`); the decoder then trains on them.
def encoder_inputs(config, data):
    """What the captioner reads per image: cached pretrained features, or the images (cnn encoder)."""
    encoder, size = config.resolved_encoder(), config.resolved_image_size()
    used = data.used()
    paths = [data.paths[i] for i in used]
    inputs = None
    info = {"encoder": encoder, "image_size": size}
    if config.encoder == "auto" and encoder != "cnn":
        print(f"encoder: {encoder} (--encoder auto: {encoders.resolve_auto()[1]})")
    if encoder == "cnn":
        images = encoders.load_image_array(paths, size)
        inputs = np.zeros((len(data.paths),) + images.shape[1:], dtype="uint8")
    else:
        features, seconds, cached = encoders.cached_features(paths, encoder, size,
                                                             flickr8k.fingerprint(paths))
        info.update(feature_time_s=round(seconds, 1), features_from_cache=cached)
        print(f"features: {features.shape[1]} positions x {features.shape[2]} per image, "
              f"{'read from the cache' if cached else 'computed'} in {seconds:.0f} s")
        images = features
        inputs = np.zeros((len(data.paths),) + features.shape[1:], dtype=features.dtype)
    inputs[used] = images
    return inputs, info


# %% Model, compile, fit
# The captioner is `models/captioning.py: build_captioner`: an encoder's grid of feature vectors and an
# LSTM decoder that, at each word, weighs the grid with Bahdanau attention
# (`models/captioning.py: BahdanauAttention`). Teacher forcing: the decoder reads the reference caption
# shifted by one word and learns to predict the next; padding is masked out of the loss
# (`models/captioning.py: masked_crossentropy`). `--decoder transformer` swaps the LSTM for a small
# Transformer decoder (`models/captioning.py: TransformerDecoder`) over the same features.
def train(config):
    import keras

    training.setup_precision(config)
    data = flickr8k.load(config)
    if config.resolved_encoder() == "cnn":  # (pretrained encoders check the images before encoding them)
        check_images([data.paths[i] for i in data.used()])
    print(f"data: {config.dataset}, images train {len(data.train)}, validation {len(data.val)}, "
          f"test {len(data.test)}" + (f" ({data.note})" if data.note else ""))
    inputs, info = encoder_inputs(config, data)
    vocabulary = flickr8k.build_vocabulary([data.captions[i] for i in data.train], config.min_count)
    vectorizer = flickr8k.make_vectorizer(vocabulary, config.max_words)
    words = vectorizer.get_vocabulary()  # "" (padding), "[UNK]", "<start>", "<end>", ...
    batches = {split: flickr8k.caption_batches(
                   inputs, *flickr8k.vectorize(vectorizer, data, data.indices[split], config.max_words),
                   config.batch_size, shuffle=split == "train", seed=config.seed)
               for split in ("train", "val")}
    run_ = training.start_run(config, data.source)
    folder = run_.folder()
    runs.write_json(folder / "vocabulary.json", words)
    model = training.build_seeded(lambda c, _: build_captioner(c, len(words), inputs.shape[1:]), config, None)
    steps = len(batches["train"])
    with training.scope():  # --distribution: the optimizer's and the metric's variables are mirrored
        model.compile(
            optimizer=training.optimizer(config, steps),  # Adam with the schedule the flags choose
            # Padding is masked out of the loss; --label-smoothing softens each next-word target.
            loss=MaskedCrossentropy(label_smoothing=config.label_smoothing),  # next-word cross-entropy
            metrics=[masked_accuracy],
            jit_compile=training.jit_compile(config),
            steps_per_execution=training.steps_per_call(config, steps))
    state = training.FitState(model, config, folder)  # exact resume after a kill
    if state.finished:
        outcome = state.load()
    else:
        # Teacher forcing: each batch is (image features, caption without its last word) -> the next words.
        model.fit(state.stream(batches["train"], steps), steps_per_epoch=steps,
                  validation_data=state.prepare(batches["val"]),
                  initial_epoch=state.epoch, epochs=state.epochs(config.epochs),
                  callbacks=state.callbacks(), verbose=config.verbose, shuffle=False)
        outcome = state.save()
    result = {"model": model.name, "params": int(model.count_params()), **info, "vocabulary": len(words),
              "decoder_params": int(model.get_layer("decoder").count_params()),
              "train_captions": int(sum(len(data.captions[i]) for i in data.train)),
              "epochs": outcome["epochs"], "train_time_s": outcome["train_time_s"],
              "time_per_epoch_s": outcome["time_per_epoch_s"], "data": data.note or "original images"}
    result.update(evaluate(model, config, data, inputs, words, folder))
    if config.export:
        result["exports"] = export_captioner(model, config, data, inputs, vectorizer, folder)
    summary = summary_rows(result, model.name)  # (Evaluation, below)
    keras.backend.clear_session()
    training.finish_run(run_, config, {model.name: result}, summary)
    return 0


def export_captioner(model, config, data, inputs, vectorizer, folder):
    """The captioner in every format Keras exports, each file's next-word logits compared with the Keras
    model's on the test images (first caption each): the files hold no generation loop, so no BLEU
    (`common/export.py: export_compared`)."""
    reason = export.unavailable()
    if reason:
        print(f"export skipped: {reason}")
        return []
    test = data.test
    image_index, tokens = flickr8k.vectorize(vectorizer, data, test, config.max_words)
    first = np.unique(image_index, return_index=True)[1]
    length = model.inputs[1].shape[1]  # the caption without its last token, as in training
    rows = export.export_compared(model, folder, [inputs[image_index[first]], tokens[first, :length]])
    print(export.write_table(rows, folder, export.COMPARE_COLUMNS))
    return rows


# %% Evaluation: decoding chosen on validation, scored on test; samples, attention
# Captions are generated word by word, greedily or with beam search (`models/captioning.py: generate`), and
# scored with the COCO caption toolkit (`datasets/flickr8k.py: caption_scores`: BLEU-1..4, ROUGE-L, CIDEr-D,
# METEOR where Java runs; NLTK's corpus BLEU beside them) and for repetition and diversity
# (`datasets/flickr8k.py: caption_diversity`). Each decoding setting is scored on the validation images; the
# one with the best validation CIDEr-D is the result, and the test split is scored once per setting (the
# others' test scores are reported for information, marked as not chosen).
CHOOSE_BY = "cider_d"


def decoding_settings(beam_size, length_penalty):
    """name -> (beam width, length penalty, repeated bigrams blocked): greedy, beam search as configured and,
    with beam search, the other length normalisation (0: summed log probability, 1: per word), each beam
    also with repeated bigrams blocked (`_norepeat`), for validation to choose from."""
    settings = {"greedy": (1, 0.0, False)}
    if beam_size > 1:
        other = 1.0 if length_penalty == 0 else 0.0
        beams = {f"beam{beam_size}": length_penalty, f"beam{beam_size}_lp{other:g}": other}
        settings.update({name: (beam_size, penalty, False) for name, penalty in beams.items()})
        settings.update({f"{name}_norepeat": (beam_size, penalty, True) for name, penalty in beams.items()})
    return settings


def choose_decoding(validation, metric=CHOOSE_BY):
    """The setting with the highest validation `metric` ({name: scores}); a tie goes to the one listed first
    (the simpler one)."""
    return max(validation, key=lambda name: validation[name][metric])


def evaluate(model, config, data, inputs, words, folder):
    """Every decoding setting scored on validation, the best CIDEr-D chosen, each scored on test; samples.png
    and the attention maps of the chosen one."""
    import time

    start_id, end_id = words.index(flickr8k.START), words.index(flickr8k.END)
    settings = decoding_settings(config.beam_size, config.length_penalty)
    unavailable = {}

    def decode_and_score(split, beam, penalty, block):
        indices = data.indices[split]
        started = time.perf_counter()
        tokens, weights = generate(model, inputs[indices], start_id, end_id, config.max_words, beam, penalty,
                                   block)
        hypotheses = [[words[t] for t in row if t] for row in tokens]
        seconds = round(time.perf_counter() - started, 1)
        scores = flickr8k.caption_scores([data.captions[i] for i in indices], hypotheses)
        unavailable.update(scores.pop("unavailable"))
        return {"beam_size": beam, "length_penalty": penalty, "block_repeats": block, **scores,
                **flickr8k.caption_diversity(hypotheses), "decode_time_s": seconds,
                "mean_length": round(float(np.mean([len(h) for h in hypotheses])), 2)}, hypotheses, weights

    validation = {name: decode_and_score("val", *decoding)[0] for name, decoding in settings.items()}
    chosen = choose_decoding(validation)
    results, generated = {}, {}
    for name, decoding in settings.items():
        results[name], generated[name], weights_of = decode_and_score("test", *decoding)
        results[name]["chosen"] = name == chosen
        if name == chosen:
            hypotheses, weights = generated[name], weights_of
    print(f"decodings scored on validation and test; chosen by validation CIDEr-D: {chosen}")
    print(score_table(validation, results))
    for metric, reason in unavailable.items():
        print(f"{metric}: n/a ({reason})")
    results.update(chosen_decoding=chosen, chosen_by=f"{CHOOSE_BY} on the validation split",
                   validation=validation, unavailable_metrics=unavailable)
    # The figures show the chosen decoding and its attention weights.
    test = data.test
    references = [data.captions[i] for i in test]
    shown = test[:max(config.samples, config.attention_maps)]
    pictures = encoders.load_image_array([data.paths[i] for i in shown], config.resolved_image_size())
    texts = [f"model: {' '.join(h)}\ntrue: {' '.join(r[0])}" for h, r in zip(hypotheses, references)]
    plots.captioned_images(pictures[:config.samples], texts[:config.samples], folder / "samples.png",
                           title=f"Test images: generated ({chosen}) and first reference caption")
    for n in range(min(config.attention_maps, len(shown))):
        length = len(hypotheses[n])
        plots.attention_maps(pictures[n], hypotheses[n], weights[n, :length], folder / f"attention_{n}.png")
    results["examples"] = [{"image": Path(data.paths[i]).name,
                            **{k: " ".join(v[n]) for k, v in generated.items()},
                            "references": [" ".join(r) for r in references[n]]}
                           for n, i in enumerate(test[:config.samples])]
    if config.dataset == "shapes":
        results["attention_on_named_shape"] = attention_hits(data, test, hypotheses, weights,
                                                             config.resolved_image_size())
    return results


SHOWN = {"bleu1": "BLEU-1", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L", "cider_d": "CIDEr-D", "meteor": "METEOR",
         "nltk_bleu4": "NLTK BLEU-4", "repeated_bigram_share": "repeated bigrams", "distinct_2": "distinct-2"}


def score_table(validation, test):
    """The validation and test scores of every decoding, the chosen one marked, as a Markdown table."""
    from common.tables import format_table

    rows = [{"split": split, "decoding": name + (" (chosen)" if test[name]["chosen"] else ""),
             **{label: "n/a" if scores[key] is None else scores[key] for key, label in SHOWN.items()}}
            for split, table in (("validation", validation), ("test", test))
            for name, scores in table.items()]
    return format_table(rows, ["split", "decoding", *SHOWN.values()])


def summary_rows(result, name):
    """The run's summary rows: every test score of the chosen decoding, BLEU and CIDEr-D of the others, and
    which decoding validation chose."""
    decodings = [k for k in result if k == "greedy" or k.startswith("beam")]
    rows = [{"model": f"{name} ({decoding})", "metric": metric, "value": result[decoding][metric],
             "params": result["params"], "train_time_s": result["train_time_s"]}
            for decoding in decodings
            for metric in (("bleu1", "bleu4", "cider_d", "rouge_l", "meteor", "repeated_bigram_share",
                            "distinct_2") if result[decoding]["chosen"] else ("bleu1", "bleu4", "cider_d"))
            if result[decoding][metric] is not None]
    return rows + [{"model": name, "metric": f"decoding chosen by validation {CHOOSE_BY}",
                    "value": result["chosen_decoding"], "params": result["params"],
                    "train_time_s": result["train_time_s"]}]


def attention_hits(data, test, hypotheses, weights, image_size):
    """Shapes only: how often the attention peak for a size, colour or shape word lies on the shape it names.

    The i-th size / colour / shape word of a caption names the i-th shape; a word counts as a hit when the
    centre of its most-attended grid cell is inside that shape's box (widened by half a cell).
    """
    boxes = json.loads((Path(data.paths[0]).parent.parent / "boxes.json").read_text())
    grid = int(round(np.sqrt(weights.shape[-1])))
    cell = image_size / grid
    groups = {"size": set(shapes.SIZES), "colour": set(shapes.COLOURS), "shape": set(shapes.SHAPES)}
    hits = {group: [] for group in groups}
    for i, words, image_weights in zip(test, hypotheses, weights):
        for group, vocabulary in groups.items():
            for which, t in enumerate([t for t, w in enumerate(words) if w in vocabulary][:2]):
                row, column = divmod(int(np.argmax(image_weights[t])), grid)
                x, y = (column + 0.5) * cell, (row + 0.5) * cell
                x0, y0, x1, y1 = boxes[Path(data.paths[i]).name][which]
                hits[group].append(x0 - cell / 2 <= x <= x1 + cell / 2
                                   and y0 - cell / 2 <= y <= y1 + cell / 2)
    return {f"{group}_words": round(float(np.mean(h)), 4) if h else None for group, h in hits.items()}


# -------------------------------------------------------------------------------------------------- caption

# %% Caption your own photos with a finished run
def add_caption_arguments(parser):
    parser.add_argument("images", nargs="+", help="image files (any size)")
    parser.add_argument("--run", required=True, help="a finished captioning run folder")
    parser.add_argument("--beam-size", default=None,
                        help="beam width, at least 1 (1 = greedy), with the run's --length-penalty and no "
                        "blocking of repeated bigrams; default: the decoding the run chose on validation")


def caption(args):
    """Print a caption for each image with a trained run's model (the run is only read)."""
    folder = Path(args.run)
    metrics = trained.open_run(folder, CaptioningConfig.TASK)
    beam_size = whole_number("--beam-size", args.beam_size, minimum=1) if args.beam_size is not None else None
    config = build_config(CaptioningConfig, config_file=folder / "config.json")
    chosen = chosen_setting(metrics, config)  # (beam width, length penalty, repeated bigrams blocked)
    words = read_vocabulary(folder / "vocabulary.json")
    for path in args.images:
        if not Path(path).is_file():
            raise UserError(f"{path} does not exist; expected an image file.")
    check_images(args.images)
    model = trained.load_model(folder / "model.keras", compile=False)
    encoder, size = config.resolved_encoder(), config.resolved_image_size()
    if encoder == "cnn":
        inputs = encoders.load_image_array(args.images, size)
    else:
        grids = encoders.pretrained_encoder(encoder, size).predict(encoders.read_images(args.images, size),
                                                                   verbose=0)
        inputs = grids.reshape(len(grids), -1, grids.shape[-1])
    inputs_of = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    trained.expect_input(model, folder / "model.keras",
                         len(inputs_of) == 2 and tuple(inputs_of[0][1:]) == inputs.shape[1:],
                         f"the {encoder} encoder's output {inputs.shape[1:]} and caption tokens in")
    decoding = (beam_size, config.length_penalty, False) if beam_size else chosen
    tokens, _ = generate(model, inputs, words.index(flickr8k.START), words.index(flickr8k.END),
                         config.max_words, *decoding)
    for path, row in zip(args.images, tokens, strict=True):
        print(f"{printable(path)}\t{' '.join(words[t] for t in row if t)}")
    return 0


def chosen_setting(metrics, config):
    """(beam width, length penalty, repeated bigrams blocked) of the decoding the run chose on validation
    (its metrics.json); the config's, unblocked, for a run from before that choice."""
    for result in (metrics.get("results") or {}).values():
        if isinstance(result, dict) and isinstance(result.get(result.get("chosen_decoding")), dict):
            chosen = result[result["chosen_decoding"]]
            beam, penalty = chosen.get("beam_size"), chosen.get("length_penalty")
            block = chosen.get("block_repeats", False)  # runs before the choice never blocked
            if (isinstance(beam, int) and beam >= 1 and isinstance(penalty, (int, float))
                    and isinstance(block, bool)):
                return beam, float(penalty), block
    return config.beam_size, config.length_penalty, False


def read_vocabulary(path):
    """The run's vocabulary.json: a list of words holding the start and end tokens."""
    try:
        words = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; --run must be a finished captioning run folder.") from None
    except (ValueError, UnicodeDecodeError):
        words = None
    if not (isinstance(words, list) and all(isinstance(w, str) for w in words)
            and {flickr8k.START, flickr8k.END} <= set(words)):
        raise UserError(f"{path} is not a caption vocabulary (a JSON list of words with {flickr8k.START} and "
                        f"{flickr8k.END}); the run folder is damaged: train again.")
    return words


# %% Things to try
# `--beam-size 5`, `--attention-penalty 0` (without the doubly stochastic penalty of Xu et al.), a smaller
# `--embedding-dim` or `--units`, `--config recipes/captioning_shapes.json` to see attention land on the shape
# each word names. Any image folder: `--dataset folder --images DIR --captions FILE`, with a Flickr8k token
# file or an `image,caption` CSV (Kaggle Flickr8k, COCO conversions).
main = task_main(CaptioningConfig, train, __doc__, commands={"caption": (add_caption_arguments, caption)})

if __name__ == "__main__":
    run(main)
