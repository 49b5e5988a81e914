"""`apply_psp` on keras_hub transformer backbones built from small configs.

The copy is of the backbone's class, with the same predictions. Their
transformer blocks keep an `activation` attribute for an inner
feed-forward layer; their output is not `activation(z)`, so a block is
never regularized whole: each block's feed-forward pre-activation gets
its term inside it, output unchanged. Saving keeps the plain backbone.
"""

import os
import zipfile

import keras
import keras_hub
import numpy as np
import pytest

import keras_psp
from keras_psp.models.psp_model import psp_layers
from keras_psp.models.psp_model import psp_losses
from tests.helpers import to_numpy

SMALL = dict(
    vocabulary_size=50,
    num_layers=2,
    num_heads=2,
    hidden_dim=32,
    intermediate_dim=64,
    max_sequence_length=16,
)


def _bert():
    inputs = {
        "token_ids": np.random.randint(0, 50, (2, 8)),
        "segment_ids": np.zeros((2, 8), "int32"),
        "padding_mask": np.ones((2, 8), "int32"),
    }
    # One feed-forward gelu Dense per block, and the pooler's tanh Dense.
    regularized = ["transformer_layer_0", "transformer_layer_1", "pooled_dense"]
    return keras_hub.models.BertBackbone(**SMALL), inputs, regularized


def _gpt2():
    inputs = {
        "token_ids": np.random.randint(0, 50, (2, 8)),
        "padding_mask": np.ones((2, 8), "int32"),
    }
    regularized = ["transformer_layer_0", "transformer_layer_1"]
    return keras_hub.models.GPT2Backbone(**SMALL), inputs, regularized


def _terms(model):
    return [float(to_numpy(t)) for t in model.losses]


def _place(model, layer):
    """The name of the top-level layer of `model` holding `layer`."""
    for top in model.layers:
        if any(inner is layer for inner in top._flatten_layers()):
            return top.name
    return None


@pytest.mark.parametrize("builder", [_bert, _gpt2], ids=["bert", "gpt2"])
def test_backbone_converts_with_equal_predictions(builder, tmp_path):
    backbone, inputs, regularized = builder()
    expected = backbone(inputs)
    converted = keras_psp.apply_psp(backbone, 1e-3)
    assert type(converted) is type(backbone) and converted is not backbone
    outputs = converted(inputs)
    # Dict outputs stay dicts, with the same keys.
    _assert_same(outputs, expected)
    places = [
        _place(converted, term.layer) for term in keras_psp.psp_terms(converted)
    ]
    assert places == regularized
    terms = _terms(converted)
    assert len(terms) == len(regularized) and min(terms) > 0
    # The blocks keep their class, copied: the backbone is left unchanged.
    block = converted.get_layer("transformer_layer_0")
    assert type(block) is type(backbone.get_layer("transformer_layer_0"))
    assert block is not backbone.get_layer("transformer_layer_0")
    backbone(inputs)
    assert not backbone.losses

    # Saved as the plain backbone; enable_psp after loading gives its terms.
    path = os.path.join(tmp_path, "converted.keras")
    converted.save(path)
    with zipfile.ZipFile(path) as archive:
        assert "keras_psp" not in archive.read("config.json").decode()
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(backbone)
    _assert_same(loaded(inputs), expected)
    assert not loaded.losses
    keras_psp.enable_psp(loaded, 1e-3)
    loaded(inputs)
    np.testing.assert_allclose(_terms(loaded), terms, rtol=1e-5)

    stripped = keras_psp.strip_psp(converted)
    assert type(stripped) is type(backbone)
    _assert_same(stripped(inputs), expected)
    assert not psp_layers(stripped) and not keras_psp.psp_terms(stripped)
    assert not stripped.losses


def _assert_same(actual, expected):
    keras.tree.assert_same_structure(actual, expected)
    for got, want in zip(
        keras.tree.flatten(actual), keras.tree.flatten(expected), strict=True
    ):
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), atol=1e-5)


def test_padded_tokens_add_nothing_to_the_penalty():
    """BERT with half of the batch's positions padded: each PSP term is that
    of the unpadded tokens alone (keras_hub's `padding_mask`)."""
    backbone = keras_hub.models.BertBackbone(**SMALL)
    converted = keras_psp.apply_psp(backbone, 1e-3, reduction="mean")
    tokens = np.random.default_rng(0).integers(1, 50, (2, 4))

    def terms(length):
        ids = np.zeros((2, length), "int32")
        ids[:, :4] = tokens
        converted(
            {
                "token_ids": ids,
                "segment_ids": np.zeros((2, length), "int32"),
                "padding_mask": (ids > 0).astype("int32"),
            }
        )
        return [float(to_numpy(t)) for t in psp_losses(converted)]

    unpadded, padded = terms(4), terms(8)
    assert len(unpadded) == 3
    np.testing.assert_allclose(padded, unpadded, rtol=1e-4)
