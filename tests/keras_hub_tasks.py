"""Tiny keras_hub *task* models, with their preprocessors, for tests.

Tests of keras-psp use these to check that a keras_hub task keeps its
workflows (`fit` on raw strings, `generate`, `save_to_preset` and
`from_preset`) once regularized. Every builder works offline: tokenizers
come from the small vocabularies below (SentencePiece protos are trained in
memory with the `sentencepiece` package), weights are random, models have a
few thousand parameters. On a 2-core CPU each builds in about 0.2 s with
TensorFlow or torch, and in 2-4 s with JAX, which compiles each weight
initializer for each new shape.
"""

import functools
import io

import keras_hub
import numpy as np

# Every sentence is lowercase, without punctuation, so that each tokenizer
# below covers every word of it.
TEXT = (
    "the quick brown fox jumped over the lazy dog",
    "a cat sat on the warm mat",
    "the dog ran to the park",
    "birds sing in the morning",
    "the fox slept under a tree",
    "rain fell on the quiet town",
    "a small boat sailed at dawn",
    "children played in the garden",
)
LABELS = (1, 0, 1, 0, 1, 0, 1, 0)

# Preprocessor length; backbones take up to `MAX_SEQUENCE_LENGTH` tokens.
SEQUENCE_LENGTH = 8
MAX_SEQUENCE_LENGTH = 16
NUM_LAYERS = 2
NUM_HEADS = 2
NUM_KEY_VALUE_HEADS = 1
HEAD_DIM = 8
HIDDEN_DIM = NUM_HEADS * HEAD_DIM
INTERMEDIATE_DIM = 32
DROPOUT = 0.0
NUM_CLASSES = 2

# Special tokens, as (kind, piece) in id order, of the SentencePiece models.
GEMMA_SPECIAL_PIECES = (
    ("pad", "<pad>"),
    ("bos", "<bos>"),
    ("eos", "<eos>"),
    ("unk", "<unk>"),
)
# Llama pads with id 0, its unknown token.
LLAMA_SPECIAL_PIECES = (("unk", "<unk>"), ("bos", "<s>"), ("eos", "</s>"))
GPT2_END_TOKEN = "<|endoftext|>"
GPT2_SPACE = "\u0120"  # "Ġ": how byte-level BPE shows a leading space.
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def raw_text():
    """Return 8 short lowercase sentences that every tokenizer here covers."""
    return list(TEXT)


def raw_labels():
    """Return a 0/1 int32 label per sentence of `raw_text()`."""
    return np.array(LABELS, dtype="int32")


def _words():
    """Return the distinct words of `TEXT`, in order of first use."""
    return list(dict.fromkeys(" ".join(TEXT).split()))


@functools.cache
def _sentencepiece_proto(special_pieces):
    """Return a serialized word-level SentencePiece model trained on `TEXT`.

    `special_pieces` gives the (kind, piece) of the special tokens, which
    take ids 0, 1, ... in that order; kinds it leaves out are disabled.
    """
    import sentencepiece

    options = {f"{kind}_id": -1 for kind in ("pad", "bos", "eos", "unk")}
    for token_id, (kind, piece) in enumerate(special_pieces):
        options[f"{kind}_id"] = token_id
        options[f"{kind}_piece"] = piece
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT),
        model_writer=proto,
        vocab_size=len(_words()) + len(special_pieces),
        model_type="WORD",
        minloglevel=2,
        **options,
    )
    return proto.getvalue()


def _gpt2_vocabulary_and_merges():
    """Return a byte-level BPE vocabulary and merges covering `TEXT`.

    Each word, with a leading "Ġ" when a space precedes it, gets merges
    joining it left to right (words with a "Ġ" first, so that their merges
    rank first): most words become one token. Every merge's result is in
    the vocabulary, so any text of these letters has no unknown tokens.
    """
    vocabulary = {GPT2_END_TOKEN: 0}
    merges = []
    words = _words()
    for word in [GPT2_SPACE + word for word in words] + words:
        vocabulary.setdefault(word[0], len(vocabulary))
        for end in range(2, len(word) + 1):
            merge = f"{word[: end - 1]} {word[end - 1]}"
            vocabulary.setdefault(word[end - 1], len(vocabulary))
            if word[:end] not in vocabulary:
                vocabulary[word[:end]] = len(vocabulary)
                merges.append(merge)
    return vocabulary, merges


def _decoder_kwargs():
    """Return the sizes shared by the Gemma and Llama backbones."""
    return dict(
        num_layers=NUM_LAYERS,
        num_query_heads=NUM_HEADS,
        num_key_value_heads=NUM_KEY_VALUE_HEADS,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=INTERMEDIATE_DIM,
        dropout=DROPOUT,
    )


def _encoder_kwargs():
    """Return the sizes shared by the GPT-2 and BERT backbones."""
    return dict(
        num_layers=NUM_LAYERS,
        num_heads=NUM_HEADS,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=INTERMEDIATE_DIM,
        dropout=DROPOUT,
        max_sequence_length=MAX_SEQUENCE_LENGTH,
    )


def gemma_causal_lm():
    """Return a tiny random `GemmaCausalLM` with its preprocessor.

    Needs the `sentencepiece` package to train the tokenizer's proto.
    """
    tokenizer = keras_hub.models.GemmaTokenizer(
        proto=_sentencepiece_proto(GEMMA_SPECIAL_PIECES)
    )
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        head_dim=HEAD_DIM,
        **_decoder_kwargs(),
    )
    preprocessor = keras_hub.models.GemmaCausalLMPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    return keras_hub.models.GemmaCausalLM(backbone, preprocessor)


def llama_causal_lm():
    """Return a tiny random `LlamaCausalLM` with its preprocessor.

    Needs the `sentencepiece` package to train the tokenizer's proto.
    """
    tokenizer = keras_hub.models.LlamaTokenizer(
        proto=_sentencepiece_proto(LLAMA_SPECIAL_PIECES)
    )
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        **_decoder_kwargs(),
    )
    preprocessor = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    return keras_hub.models.LlamaCausalLM(backbone, preprocessor)


def gpt2_causal_lm():
    """Return a tiny random `GPT2CausalLM` with its preprocessor."""
    vocabulary, merges = _gpt2_vocabulary_and_merges()
    tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary=vocabulary, merges=merges
    )
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), **_encoder_kwargs()
    )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    return keras_hub.models.GPT2CausalLM(backbone, preprocessor)


def bert_text_classifier():
    """Return a tiny random 2-class `BertTextClassifier` with preprocessor."""
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=list(BERT_SPECIAL_TOKENS) + _words(), lowercase=True
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), **_encoder_kwargs()
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    return keras_hub.models.BertTextClassifier(
        backbone, NUM_CLASSES, preprocessor, dropout=DROPOUT
    )
