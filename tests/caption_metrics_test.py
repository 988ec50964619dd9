"""Caption metrics: the COCO caption toolkit's scores (datasets/flickr8k.py: caption_scores), repetition and
diversity (caption_diversity), the choice of decoding on validation (tasks/captioning.py: choose_decoding) and
the benchmark's row cells for them (benchmarks/captioning.py: score_cells)."""

import shutil

import pytest

from benchmarks import captioning as bench
from datasets import flickr8k
from tasks import captioning

pytest.importorskip("pycocoevalcap", reason="pip install -r requirements.txt")

# Four images with distinct words, so that CIDEr-D's document frequencies tell their n-grams apart.
REFERENCES = [
    [["a", "black", "dog", "runs", "on", "the", "green", "grass"],
     ["a", "dog", "is", "running", "across", "a", "lawn"]],
    [["two", "children", "play", "in", "the", "sand", "at", "the", "beach"],
     ["kids", "building", "a", "sandcastle", "by", "the", "sea"]],
    [["a", "man", "rides", "a", "red", "bicycle", "down", "the", "street"],
     ["a", "cyclist", "on", "a", "city", "road"]],
    [["a", "woman", "in", "a", "blue", "coat", "stands", "in", "the", "snow"],
     ["a", "person", "standing", "outside", "in", "winter"]],
]
UNRELATED = [["purple", "elephants", "juggle", "violins"], ["quantum", "soup", "whistles", "loudly"],
             ["seven", "clocks", "argue", "politely"], ["marble", "owls", "compose", "sonnets"]]
NO_JAVA_REASON = "needs a Java runtime"


def no_java(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *args, **kwargs: None if name == "java" else real(name, *args, **kwargs))


@pytest.fixture(params=[pytest.param("java", marks=pytest.mark.slow), "no java"])
def java_or_not(request, monkeypatch):
    """Both paths: the toolkit's PTB tokenizer and METEOR (where Java is installed), the Python tokenizer."""
    if request.param == "java" and shutil.which("java") is None:
        pytest.skip("no Java runtime: apt-get install default-jre-headless")
    if request.param == "no java":
        no_java(monkeypatch)
    return request.param


@pytest.mark.slow
def test_identical_captions_score_the_maximum_and_unrelated_ones_near_zero(java_or_not):
    perfect = flickr8k.caption_scores(REFERENCES, [r[0] for r in REFERENCES])
    for n in range(1, 5):
        assert perfect[f"bleu{n}"] == pytest.approx(1.0, abs=1e-4)
        assert perfect[f"nltk_bleu{n}"] == 1.0
    assert perfect["rouge_l"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["cider_d"] > 2.0  # the toolkit's scale: an exact match of one of two references
    unrelated = flickr8k.caption_scores(REFERENCES, UNRELATED)
    for key in ("bleu1", "bleu4", "rouge_l", "cider_d", "nltk_bleu1", "nltk_bleu4"):
        assert unrelated[key] == pytest.approx(0.0, abs=1e-3), key
    assert set(perfect) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d", "meteor", "spice",
                            "nltk_bleu1", "nltk_bleu2", "nltk_bleu3", "nltk_bleu4", "tokenizer",
                            "unavailable"}
    assert perfect["spice"] is None and perfect["unavailable"]["spice"]  # offline: never faked
    if java_or_not == "java":
        assert perfect["tokenizer"].startswith("PTB tokenizer")
        assert perfect["meteor"] > 0.9 and unrelated["meteor"] < 0.05
        assert "meteor" not in perfect["unavailable"]
    else:
        assert perfect["tokenizer"].startswith("Python")
        assert perfect["meteor"] is None and unrelated["meteor"] is None
        assert NO_JAVA_REASON in perfect["unavailable"]["meteor"]
        assert NO_JAVA_REASON in perfect["unavailable"]["spice"]


@pytest.mark.slow
def test_the_python_tokenizer_gives_the_ptb_tokenizers_scores():
    if shutil.which("java") is None:
        pytest.skip("no Java runtime: apt-get install default-jre-headless")
    hypotheses = [["a", "dog", "cannot", "run", "on", "grass"],
                  ["children", "gonna", "play", "at", "the", "sea"], [], ["a", "woman", "in", "the", "snow"]]
    with_java = flickr8k.caption_scores(REFERENCES, hypotheses)  # an empty caption too: it scores 0
    with pytest.MonkeyPatch.context() as patch:
        no_java(patch)
        without = flickr8k.caption_scores(REFERENCES, hypotheses)
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d", "nltk_bleu4"):
        assert with_java[key] == without[key], key
    texts = ["a dog cannot run", "they are gonna play", ""]
    python = [flickr8k._python_tokenize(t) for t in texts]
    assert flickr8k._ptb_tokenize(texts, shutil.which("java")) == python == [
        "a dog can not run", "they are gon na play", ""]


def test_mismatched_or_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="one generated caption per image"):
        flickr8k.caption_scores(REFERENCES, UNRELATED[:2])
    with pytest.raises(ValueError, match="at least one image"):
        flickr8k.caption_scores([], [])
    with pytest.raises(ValueError, match="at least one reference"):
        flickr8k.caption_scores([[]], [["a"]])


def test_repeated_bigram_share_and_distinct_n_by_hand():
    assert flickr8k.caption_diversity([["a", "dog", "and", "a", "dog"], ["a", "cat", "runs"]])[
        "repeated_bigram_share"] == 0.5
    # unigrams: a dog a cat | a dog runs -> 7 in all, distinct {a, dog, cat, runs} = 4
    # bigrams: (a dog) (dog a) (a cat) | (a dog) (dog runs) -> 5 in all, 4 distinct
    diversity = flickr8k.caption_diversity([["a", "dog", "a", "cat"], ["a", "dog", "runs"]])
    assert diversity == {"repeated_bigram_share": 0.0, "vocabulary_used": 4,
                         "distinct_1": round(4 / 7, 4), "distinct_2": 0.8}
    assert flickr8k.caption_diversity([[], ["dog"]]) == {"repeated_bigram_share": 0.0, "vocabulary_used": 1,
                                                         "distinct_1": 1.0, "distinct_2": 0.0}


def test_validation_chooses_the_setting_with_the_higher_cider_d():
    validation = {"greedy": {"cider_d": 0.41, "bleu4": 0.30}, "beam3": {"cider_d": 0.47, "bleu4": 0.20},
                  "beam3_lp1": {"cider_d": 0.45, "bleu4": 0.35}}
    assert captioning.choose_decoding(validation) == "beam3"  # not the best BLEU-4
    assert captioning.choose_decoding(validation, "bleu4") == "beam3_lp1"
    tie = {"greedy": {"cider_d": 0.5}, "beam2": {"cider_d": 0.5}}
    assert captioning.choose_decoding(tie) == "greedy"  # a tie goes to the simpler setting, listed first


def test_decoding_settings_offer_greedy_beam_the_other_length_normalisation_and_blocked_repeats():
    assert captioning.decoding_settings(1, 0.0) == {"greedy": (1, 0.0, False)}
    assert captioning.decoding_settings(3, 0.0) == {
        "greedy": (1, 0.0, False), "beam3": (3, 0.0, False), "beam3_lp1": (3, 1.0, False),
        "beam3_norepeat": (3, 0.0, True), "beam3_lp1_norepeat": (3, 1.0, True)}
    assert list(captioning.decoding_settings(5, 0.7).items())[:3] == [
        ("greedy", (1, 0.0, False)), ("beam5", (5, 0.7, False)), ("beam5_lp0", (5, 0.0, False))]


def scores(cider, chosen, meteor=0.21):
    return {"bleu1": 0.6, "bleu4": 0.2, "nltk_bleu1": 0.61, "nltk_bleu2": 0.42, "nltk_bleu3": 0.28,
            "nltk_bleu4": 0.19, "cider_d": cider, "rouge_l": 0.45, "meteor": meteor,
            "repeated_bigram_share": 0.125, "distinct_2": 0.3333, "chosen": chosen}


def test_summary_rows_and_benchmark_cells_carry_the_new_metrics():
    result = {"params": 10, "train_time_s": 1.0, "greedy": scores(0.5, False, meteor=None),
              "beam3": scores(0.55, True, meteor=None), "chosen_decoding": "beam3",
              "validation": {"greedy": {"cider_d": 0.48}, "beam3": {"cider_d": 0.52}}}
    rows = captioning.summary_rows(result, "captioner_lstm")
    metrics = {(r["model"], r["metric"]) for r in rows}
    assert {("captioner_lstm (greedy)", "bleu1"), ("captioner_lstm (greedy)", "bleu4"),
            ("captioner_lstm (greedy)", "cider_d"), ("captioner_lstm (beam3)", "distinct_2"),
            ("captioner_lstm (beam3)", "repeated_bigram_share")} <= metrics
    assert not any(r["metric"] == "meteor" for r in rows)  # None: reported unavailable, not as a number
    assert rows[-1]["value"] == "beam3" and "chosen" in rows[-1]["metric"]
    cells = bench.score_cells(result, "beam3")
    assert cells == {"decoding": "beam3 (chosen on val)", "BLEU-1": "0.6100", "BLEU-2": "0.4200",
                     "BLEU-3": "0.2800", "BLEU-4": "0.1900", "CIDEr-D": "0.5500", "ROUGE-L": "0.4500",
                     "METEOR": "n/a", "repeated bigrams": "12.5%", "distinct-2": "0.3333",
                     "val CIDEr-D": "0.5200"}
    assert bench.score_cells(result, "greedy")["decoding"] == "greedy (not chosen)"
    assert set(cells) <= set(bench.COLUMNS)
    older = {"greedy": {"bleu1": 0.6, "bleu2": 0.4, "bleu3": 0.3, "bleu4": 0.2}}  # a run before the toolkit
    assert bench.score_cells(older, "greedy") == {"decoding": "greedy", "BLEU-1": "0.6000",
                                                  "BLEU-2": "0.4000", "BLEU-3": "0.3000", "BLEU-4": "0.2000"}


def test_the_caption_command_decodes_as_the_run_chose_on_validation():
    from tasks.captioning import CaptioningConfig, chosen_setting

    config = CaptioningConfig()
    metrics = {"results": {"captioner_lstm": {
        "chosen_decoding": "beam3_lp1_norepeat", "greedy": {"beam_size": 1, "length_penalty": 0.0},
        "beam3_lp1_norepeat": {"beam_size": 3, "length_penalty": 1.0, "block_repeats": True}}}}
    assert chosen_setting(metrics, config) == (3, 1.0, True)
    before_blocking = {"results": {"captioner_lstm": {"chosen_decoding": "beam3",
                                                      "beam3": {"beam_size": 3, "length_penalty": 0.0}}}}
    assert chosen_setting(before_blocking, config) == (3, 0.0, False)
    older = {"results": {"captioner_lstm": {"greedy": {"bleu4": 0.1}}}}  # before the validation choice
    assert chosen_setting(older, config) == (config.beam_size, config.length_penalty, False)
