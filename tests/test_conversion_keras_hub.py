"""`apply_psp` on keras_hub transformer backbones built from small configs.

Their transformer blocks keep an `activation` attribute for an inner
feed-forward layer; their output is not `activation(z)`, so they must never
be wrapped whole: they are skipped and reported, and the rest converts.
"""

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
    # The pooler's tanh Dense is the one pre-activation outside the blocks.
    return keras_hub.models.BertBackbone(**SMALL), inputs, ["pooled_dense"]


def _gpt2():
    inputs = {
        "token_ids": np.random.randint(0, 50, (2, 8)),
        "padding_mask": np.ones((2, 8), "int32"),
    }
    return keras_hub.models.GPT2Backbone(**SMALL), inputs, []


@pytest.mark.parametrize("builder", [_bert, _gpt2], ids=["bert", "gpt2"])
def test_backbone_converts_with_equal_predictions(builder):
    backbone, inputs, regularized = builder()
    expected = backbone(inputs)
    with pytest.warns(UserWarning, match=r"(?s)transformer_layer_0.*not known"):
        converted = keras_psp.apply_psp(backbone, 1e-3)
    outputs = converted(inputs)
    # Dict outputs stay dicts, with the same keys.
    keras.tree.assert_same_structure(outputs, expected)
    for got, want in zip(
        keras.tree.flatten(outputs), keras.tree.flatten(expected), strict=True
    ):
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), atol=1e-5)
    assert [layer.name for layer in psp_layers(converted)] == regularized
    assert len(psp_losses(converted)) == len(regularized)
    # The blocks are kept whole, unwrapped.
    block = converted.get_layer("transformer_layer_0")
    assert type(block) is type(backbone.get_layer("transformer_layer_0"))
