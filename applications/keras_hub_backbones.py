"""Tiny random-weight builds of every `keras_hub.models.*Backbone`.

Each configuration builds a keras-hub backbone at a tiny size (a couple of
layers, hidden sizes of 8 to 64, vocabularies of 50, images of 32x32 or
whatever the model minimally needs) with random weights, together with a
batch of 2 sample inputs it accepts. Nothing is downloaded: `from_preset` is
never called. Sweeps use it to convert every backbone and compare
predictions.

Configuration names are backbone class names, optionally followed by a
variant in brackets, e.g. `"DINOV2Backbone[swiglu]"` or
`"MixtralBackbone"`:

    from applications import keras_hub_backbones

    for name in keras_hub_backbones.configurations():
        backbone, inputs = keras_hub_backbones.build(name)
        outputs = backbone.predict(inputs, verbose=0)

Sequence inputs use half-padded padding masks: the first sequence is full,
the second has its last half padded (zeros), so masks are exercised.

Compare against `backbone.predict(inputs)` or `backbone(inputs,
training=False)`: a plain `backbone(inputs)` runs the BatchNormalization
layers that follow a `keras.layers.Resizing` in training mode (Resizing's
`call` defaults to `training=True`, which leaks into the call context), so
for `SegFormerBackbone` and `DeepLabV3Backbone` it gives other outputs and
updates the moving statistics.

Some names are aliases of one class (`ESM2Backbone` of `ESMBackbone`,
`Qwen2Backbone` of `QwenBackbone`, `SmolLMBackbone` of `SmolLM3Backbone`);
their configurations differ, to cover more of the class.

Written against keras-hub 0.32; constructor arguments follow the backbone
tests of keras-hub (`*_backbone_test.py`).
"""

import functools

import keras
import numpy as np

BATCH = 2
SEQ = 8
VOCAB = 50

# Backbones of `keras_hub.models` that cannot be built small. Every name of
# `backbone_names()` is either a plain configuration or a key here.
UNBUILDABLE = {}

_BUILDERS = {}


def backbone_names():
    """Sorted names of every keras_hub.models.*Backbone class."""
    import keras_hub

    base = keras_hub.models.Backbone
    names = []
    for name in dir(keras_hub.models):
        cls = getattr(keras_hub.models, name)
        if (
            name.endswith("Backbone")
            and isinstance(cls, type)
            and issubclass(cls, base)
            and cls is not base
        ):
            names.append(name)
    return sorted(names)


def configurations():
    """Sorted names of every configuration: class names and variants."""
    return sorted(_BUILDERS)


def build(name, seed=0):
    """(backbone, inputs): the backbone `name` at a tiny config.

    Args:
        name: a configuration name from `configurations()`, a backbone class
            name such as `"BertBackbone"` or a variant such as
            `"DINOV2Backbone[swiglu]"`.
        seed: seeds the weights (`keras.utils.set_random_seed`) and the
            sample inputs (`numpy.random.default_rng`).

    Returns:
        The backbone, with random weights, and a batch of 2 sample inputs
        (numpy arrays, a dict when the backbone takes a dict) that
        `backbone(inputs)` and `backbone.predict(inputs)` accept. Arrays are
        cast to the dtypes of the backbone's inputs.

    Raises:
        KeyError: for an unknown name, or a backbone of `UNBUILDABLE`.
    """
    if name not in _BUILDERS:
        reason = UNBUILDABLE.get(name, "unknown backbone configuration")
        raise KeyError(f"{name}: {reason}")
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    backbone, inputs = _BUILDERS[name](rng)
    return backbone, _conform(backbone, inputs)


def _register(name, **kwargs):
    """Registers the decorated builder as configuration `name`."""

    def decorator(fn):
        if name in _BUILDERS:
            raise ValueError(f"Duplicate configuration {name}")
        _BUILDERS[name] = functools.partial(fn, **kwargs)
        return fn

    return decorator


def _conform(backbone, inputs):
    """Casts the sample arrays to the dtypes of the backbone's inputs."""
    spec = backbone.input
    if isinstance(inputs, dict) and isinstance(spec, dict):
        return {
            key: _cast(value, spec[key].dtype) if key in spec else value
            for key, value in inputs.items()
        }
    if isinstance(inputs, np.ndarray) and hasattr(spec, "dtype"):
        return _cast(inputs, spec.dtype)
    return inputs


def _cast(array, dtype):
    return np.asarray(array).astype(keras.backend.standardize_dtype(dtype))


# === Sample inputs ===


def _tokens(rng, length=SEQ, vocab=VOCAB):
    """Random token ids in [1, vocab), shape (BATCH, length)."""
    return rng.integers(1, vocab, size=(BATCH, length)).astype("int32")


def _mask(length=SEQ):
    """Padding mask: first row full, second row with its last half zeros."""
    mask = np.ones((BATCH, length), dtype="int32")
    mask[1, length - length // 2 :] = 0
    return mask


def _segments(length=SEQ):
    """Segment ids: 0 on the first half, 1 on the second half."""
    segments = np.zeros((BATCH, length), dtype="int32")
    segments[:, length // 2 :] = 1
    return segments


def _text(rng, length=SEQ, vocab=VOCAB, segments=False, mask=True):
    inputs = {"token_ids": _tokens(rng, length, vocab)}
    if segments:
        inputs["segment_ids"] = _segments(length)
    if mask:
        inputs["padding_mask"] = _mask(length)
    return inputs


def _seq2seq(rng, encoder_length=SEQ, decoder_length=SEQ, vocab=VOCAB):
    return {
        "encoder_token_ids": _tokens(rng, encoder_length, vocab),
        "encoder_padding_mask": _mask(encoder_length),
        "decoder_token_ids": _tokens(rng, decoder_length, vocab),
        "decoder_padding_mask": _mask(decoder_length),
    }


def _images(rng, height=32, width=None, channels=3, leading=()):
    """Random images in [0, 1), shape (BATCH, *leading, h, w, channels)."""
    width = height if width is None else width
    shape = (BATCH, *leading, height, width, channels)
    return rng.uniform(size=shape).astype("float32")


def _normal(rng, *shape):
    return rng.normal(size=(BATCH, *shape)).astype("float32")


def _vision_slots(length, start, count):
    """Mask and indices placing `count` vision tokens at `start`."""
    mask = np.zeros((BATCH, length), dtype=bool)
    mask[:, start : start + count] = True
    indices = np.tile(np.arange(start, start + count, dtype="int32"), (2, 1))
    return mask, indices


def _models():
    import keras_hub

    return keras_hub.models


def _layers():
    import keras_hub

    return keras_hub.layers


# === Encoder-only text models ===


@_register("AlbertBackbone")
def _albert(rng):
    backbone = _models().AlbertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        num_groups=1,
        num_inner_repetitions=1,
        embedding_dim=16,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _text(rng, segments=True)


@_register("BertBackbone")
def _bert(rng):
    backbone = _models().BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _text(rng, segments=True)


@_register("DebertaV3Backbone")
def _deberta_v3(rng):
    backbone = _models().DebertaV3Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
        bucket_size=4,
    )
    return backbone, _text(rng)


@_register("DistilBertBackbone")
def _distil_bert(rng):
    backbone = _models().DistilBertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _text(rng)


@_register("ElectraBackbone")
def _electra(rng):
    backbone = _models().ElectraBackbone(
        vocab_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        embedding_dim=16,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _text(rng, segments=True)


@_register("ESMBackbone", position_embedding_type="absolute")
@_register("ESM2Backbone", position_embedding_type="rotary")
def _esm(rng, position_embedding_type):
    # ESM has no padding_mask input: it masks `pad_token_id` (0) tokens.
    backbone = _models().ESMBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
        position_embedding_type=position_embedding_type,
        use_pre_layer_norm=position_embedding_type == "rotary",
    )
    token_ids = _tokens(rng) * _mask()
    return backbone, {"token_ids": token_ids}


@_register("FNetBackbone")
def _f_net(rng):
    backbone = _models().FNetBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _text(rng, segments=True, mask=False)


@_register("RobertaBackbone")
def _roberta(rng):
    backbone = _models().RobertaBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _text(rng)


@_register("RoformerV2Backbone")
def _roformer_v2(rng):
    backbone = _models().RoformerV2Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        head_size=16,
    )
    # RoFormerV2 has no padding_mask input: it masks token id 0.
    inputs = _text(rng, segments=True, mask=False)
    inputs["token_ids"] *= _mask()
    return backbone, inputs


@_register("XLMRobertaBackbone")
def _xlm_roberta(rng):
    backbone = _models().XLMRobertaBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _text(rng)


@_register("XLNetBackbone")
def _xlnet(rng):
    backbone = _models().XLNetBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )
    return backbone, _text(rng, segments=True)


# === Decoder-only text models ===


@_register("BloomBackbone")
def _bloom(rng):
    backbone = _models().BloomBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )
    return backbone, _text(rng)


@_register("FalconBackbone")
def _falcon(rng):
    backbone = _models().FalconBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_attention_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )
    return backbone, _text(rng)


@_register("GPT2Backbone")
def _gpt2(rng):
    backbone = _models().GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _text(rng)


@_register("GPTNeoXBackbone")
def _gpt_neo_x(rng):
    backbone = _models().GPTNeoXBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _text(rng)


@_register("OPTBackbone")
def _opt(rng):
    backbone = _models().OPTBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _text(rng)


@_register("GemmaBackbone")
@_register(
    "GemmaBackbone[gemma2]",
    sliding_window_size=4,
    attention_logit_soft_cap=50.0,
    final_logit_soft_cap=30.0,
    query_head_dim_normalize=False,
    use_post_ffw_norm=True,
    use_post_attention_norm=True,
    use_sliding_window_attention=True,
)
def _gemma(rng, **kwargs):
    backbone = _models().GemmaBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        head_dim=8,
        **kwargs,
    )
    return backbone, _text(rng)


@_register("LlamaBackbone", cls="LlamaBackbone")
@_register(
    "Llama3Backbone",
    cls="Llama3Backbone",
    rope_frequency_adjustment_factor=8.0,
    rope_low_freq_factor=1.0,
    rope_high_freq_factor=4.0,
    rope_pretraining_sequence_length=64,
)
def _llama(rng, cls, **kwargs):
    backbone = getattr(_models(), cls)(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        **kwargs,
    )
    return backbone, _text(rng)


@_register("MistralBackbone")
def _mistral(rng):
    backbone = _models().MistralBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        sliding_window=4,
    )
    return backbone, _text(rng)


@_register("Phi3Backbone")
@_register("Phi3Backbone[su_rope]", rope_scaling_type="su")
def _phi3(rng, rope_scaling_type=None):
    kwargs = {}
    if rope_scaling_type:
        # One factor per rotary frequency: head_dim / 2 = 32 / 4 / 2 = 4.
        # The sequences (8) are longer than the pretraining length (4), so
        # the long factors apply.
        kwargs = dict(
            max_sequence_length=16,
            pretraining_sequence_length=4,
            rope_scaling_type=rope_scaling_type,
            rope_scaling_short_factor=[1.0 + 0.1 * i for i in range(4)],
            rope_scaling_long_factor=[1.0 - 0.1 * i for i in range(4)],
        )
    backbone = _models().Phi3Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        **kwargs,
    )
    return backbone, _text(rng)


@_register("QwenBackbone", cls="QwenBackbone")
@_register(
    "Qwen2Backbone",
    cls="Qwen2Backbone",
    use_sliding_window_attention=True,
    sliding_window_size=4,
)
def _qwen(rng, cls, **kwargs):
    backbone = getattr(_models(), cls)(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        **kwargs,
    )
    return backbone, _text(rng)


@_register("Qwen3Backbone")
def _qwen3(rng):
    backbone = _models().Qwen3Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        hidden_dim=32,
        intermediate_dim=64,
    )
    return backbone, _text(rng)


_QWEN3_5_LINEAR = dict(
    layer_types=["linear_attention", "full_attention"],
    partial_rotary_factor=0.25,
    linear_num_key_heads=2,
    linear_num_value_heads=4,
    linear_key_head_dim=4,
    linear_value_head_dim=4,
    linear_conv_kernel_dim=4,
)


@_register("Qwen3_5Backbone")
def _qwen3_5(rng):
    # Alternates a gated delta-net (linear attention) and a full attention.
    backbone = _models().Qwen3_5Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        hidden_dim=32,
        intermediate_dim=64,
        **_QWEN3_5_LINEAR,
    )
    return backbone, _text(rng)


@_register("RWKV7Backbone")
def _rwkv7(rng):
    backbone = _models().RWKV7Backbone(
        vocabulary_size=VOCAB,
        hidden_size=32,
        num_layers=2,
        head_size=8,
        intermediate_dim=64,
        gate_lora=16,
        mv_lora=8,
        aaa_lora=8,
        decay_lora=8,
    )
    return backbone, _text(rng, length=16)


@_register("SmolLMBackbone", cls="SmolLMBackbone", nope=False)
@_register("SmolLM3Backbone", cls="SmolLM3Backbone", nope=True)
def _smollm3(rng, cls, nope):
    # SmolLM3 skips rotary embeddings (NoPE) on some layers.
    backbone = getattr(_models(), cls)(
        vocabulary_size=VOCAB,
        hidden_dim=32,
        intermediate_dim=64,
        num_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attention_bias=False,
        attention_dropout=0.0,
        rope_layer_enabled_list=[True, not nope],
        layer_types=["attention", "attention"],
        mlp_bias=False,
        layer_norm_epsilon=1e-5,
        max_position_embeddings=64,
        rope_theta=10000.0,
        partial_rotary_factor=1.0,
    )
    return backbone, _text(rng)


# === Mixture-of-experts text models ===


@_register("GptOssBackbone")
def _gpt_oss(rng):
    backbone = _models().GptOssBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=32,
        num_experts=4,
        top_k=2,
        sliding_window=4,
    )
    return backbone, _text(rng)


@_register("MixtralBackbone")
def _mixtral(rng):
    backbone = _models().MixtralBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=32,
        num_experts=4,
        top_k=2,
        sliding_window=4,
    )
    return backbone, _text(rng)


@_register("QwenMoeBackbone")
def _qwen_moe(rng):
    # Every other layer dense (`decoder_sparse_step=2`), experts plus a
    # shared expert on the others.
    backbone = _models().QwenMoeBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        moe_intermediate_dim=16,
        shared_expert_intermediate_dim=32,
        num_experts=4,
        top_k=2,
        norm_top_k_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[1],
    )
    return backbone, _text(rng)


@_register("Qwen3MoeBackbone")
def _qwen3_moe(rng):
    backbone = _models().Qwen3MoeBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        hidden_dim=32,
        intermediate_dim=64,
        moe_intermediate_dim=16,
        num_experts=4,
        top_k=2,
        norm_top_k_prob=True,
        mlp_only_layers=[1],
    )
    return backbone, _text(rng)


@_register("Qwen3_5MoeBackbone")
def _qwen3_5_moe(rng):
    backbone = _models().Qwen3_5MoeBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        hidden_dim=32,
        moe_intermediate_dim=16,
        shared_expert_intermediate_size=16,
        num_experts=4,
        top_k=2,
        **_QWEN3_5_LINEAR,
    )
    return backbone, _text(rng)


# === Gemma 3, 3n and 4 (text, vision, audio) ===

_GEMMA3_TEXT = dict(
    vocabulary_size=VOCAB,
    num_layers=6,
    num_query_heads=2,
    num_key_value_heads=1,
    hidden_dim=16,
    intermediate_dim=32,
    head_dim=8,
    use_sliding_window_attention=True,
    sliding_window_size=4,
)


@_register("Gemma3Backbone")
@_register("Gemma3Backbone[vision]", vision=True)
def _gemma3(rng, vision=False):
    # Six layers: five sliding-window layers, then a global one.
    models = _models()
    image_size = 16
    vision_encoder = None
    if vision:
        vision_encoder = models.Gemma3VisionEncoder(
            image_size=image_size,
            patch_size=4,
            pool_size=2,
            num_layers=2,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            output_dim=16,
        )
    backbone = models.Gemma3Backbone(
        image_size=image_size,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        vision_encoder=vision_encoder,
        **_GEMMA3_TEXT,
    )
    inputs = _text(rng, length=16)
    if vision:
        # One image per prompt: (16 / 4 / 2) ** 2 = 4 vision tokens.
        inputs["images"] = _images(rng, image_size, leading=(1,))
        inputs["vision_mask"], inputs["vision_indices"] = _vision_slots(
            16, 2, 4
        )
    return backbone, inputs


@_register("Gemma3nBackbone")
@_register("Gemma3nBackbone[multimodal]", multimodal=True)
def _gemma3n(rng, multimodal=False):
    from keras_hub.src.models.gemma3n.gemma3n_audio_encoder import (
        Gemma3nAudioEncoder,
    )
    from keras_hub.src.models.mobilenetv5.mobilenetv5_builder import (
        convert_arch_def_to_stackwise,
    )

    # Token ids: text below 40 (the per-layer-input vocabulary), vision
    # soft tokens in [40, 48), audio soft tokens in [48, 56), as in Gemma 3n
    # where the special ids sit at the top of the text vocabulary.
    text_vocab, image_token_id, audio_token_id = 40, 41, 49
    image_size, audio_frames, audio_features = 16, 8, 16
    image_tokens, audio_tokens = 4, 2
    kwargs = {}
    if multimodal:
        # 16 x 16 images, strided 8 times: 2 x 2 = 4 soft tokens per image.
        vision_encoder = _models().MobileNetV5Backbone(
            **convert_arch_def_to_stackwise(
                [["er_r1_k3_s2_e1_c8"], ["uir_r1_a0_k3_s2_e2_c8"]]
            ),
            stem_size=8,
            num_features=8,
            image_shape=(image_size, image_size, 3),
            use_msfa=False,
        )
        # 8 frames, strided 4 times: 2 soft tokens per clip.
        audio_encoder = Gemma3nAudioEncoder(
            hidden_size=8,
            input_feat_size=audio_features,
            sscp_conv_channel_size=[2, 4],
            sscp_conv_kernel_size=[(1, 1), (1, 1)],
            sscp_conv_stride_size=[(2, 2), (2, 2)],
            sscp_conv_group_norm_eps=1e-5,
            num_hidden_layers=1,
            rms_norm_eps=1e-6,
            gradient_clipping=1.0,
            residual_weight=0.5,
            num_attention_heads=1,
            attention_chunk_size=2,
            num_attention_context_right=1,
            num_attention_context_left=1,
            attention_logit_cap=50.0,
            conv_kernel_size=3,
            reduction_factor=1,
        )
        kwargs = dict(
            vision_encoder_config=vision_encoder.get_config(),
            vision_hidden_size=8,
            vision_vocab_size=8,
            vision_vocab_offset=text_vocab,
            vision_soft_tokens_per_image=image_tokens,
            image_token_id=image_token_id,
            audio_encoder_config=audio_encoder.get_config(),
            audio_hidden_size=8,
            audio_vocab_size=8,
            audio_vocab_offset=text_vocab + 8,
            audio_soft_tokens_per_image=audio_tokens,
            audio_token_id=audio_token_id,
        )
    # Two layers: a sliding-window one with a sparse (top-k gaussian) gated
    # activation, then a global one.
    backbone = _models().Gemma3nBackbone(
        text_vocab_size=text_vocab + 16,
        text_hidden_size=16,
        num_hidden_layers=2,
        pad_token_id=0,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        intermediate_size=[32, 32],
        hidden_activation="gelu_approximate",
        layer_types=["sliding_attention", "full_attention"],
        activation_sparsity_pattern=[0.95, 0.0],
        sliding_window=4,
        rope_theta=10000.0,
        max_position_embeddings=32,
        vocab_size_per_layer_input=text_vocab,
        hidden_size_per_layer_input=4,
        altup_num_inputs=2,
        laurel_rank=2,
        **kwargs,
    )
    length = 16 if multimodal else SEQ
    inputs = _text(rng, length=length, vocab=text_vocab)
    if multimodal:
        # Image soft tokens at 2-5, audio soft tokens at 6-7.
        inputs["token_ids"][:, 2:6] = image_token_id
        inputs["token_ids"][:, 6:8] = audio_token_id
        inputs["images"] = _images(rng, image_size, leading=(1,))
        inputs["input_features"] = _normal(rng, 1, audio_frames, audio_features)
        # True marks padded audio frames: the second clip's last half.
        inputs["input_features_mask"] = np.zeros(
            (BATCH, 1, audio_frames), dtype=bool
        )
        inputs["input_features_mask"][1, :, audio_frames // 2 :] = True
    return backbone, inputs


@_register("Gemma4Backbone")
@_register("Gemma4Backbone[vision]", vision=True)
@_register(
    "Gemma4Backbone[moe]",
    enable_moe_block=True,
    num_experts=4,
    expert_intermediate_dim=8,
    num_experts_per_token=2,
)
@_register("Gemma4Backbone[audio]", audio=True)
def _gemma4(rng, vision=False, audio=False, **kwargs):
    models = _models()
    image_size, patch_size, length = 16, 4, 16
    if vision:
        kwargs["vision_encoder"] = models.Gemma4VisionEncoder(
            image_size=image_size,
            patch_size=patch_size,
            pool_size=2,
            num_layers=2,
            num_heads=2,
            head_dim=4,
            num_key_value_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            output_dim=16,
        )
    audio_tokens, audio_frames, audio_features = 4, 16, 8
    if audio:
        kwargs["audio_encoder"] = models.Gemma4AudioEncoder(
            input_feat_size=audio_features,
            hidden_size=8,
            num_heads=2,
            num_layers=1,
            chunk_size=4,
            context_left=5,
            context_right=0,
            sscp_conv_channels=(4, 2),
            sscp_kernel_sizes=((3, 3), (3, 3)),
            sscp_stride_sizes=((2, 2), (2, 2)),
            output_proj_dims=None,
            output_dim=16,
        )
        kwargs["num_audio_tokens_per_clip"] = audio_tokens
    backbone = models.Gemma4Backbone(
        image_size=image_size,
        attention_logit_soft_cap=None,
        final_logit_soft_cap=None,
        **_GEMMA3_TEXT,
        **kwargs,
    )
    inputs = _text(rng, length=length)
    inputs["position_ids"] = np.tile(
        np.arange(length, dtype="int32"), (BATCH, 1)
    )
    if vision:
        # One image of 4 x 4 patches, pooled 2 x 2: 4 vision tokens.
        side = image_size // patch_size
        rows, cols = np.meshgrid(np.arange(side), np.arange(side))
        positions = np.stack([cols.ravel(), rows.ravel()], axis=-1)
        inputs["pixel_values"] = rng.uniform(
            size=(BATCH, 1, side * side, 3 * patch_size**2)
        ).astype("float32")
        inputs["pixel_position_ids"] = np.tile(
            positions.astype("int32"), (BATCH, 1, 1, 1)
        )
        inputs["vision_mask"], inputs["vision_indices"] = _vision_slots(
            length, 2, 4
        )
    if audio:
        inputs["audio_mel"] = _normal(rng, 1, audio_frames, audio_features)
        inputs["audio_mel_mask"] = np.ones(
            (BATCH, 1, audio_frames), dtype="int32"
        )
        audio_mask, inputs["audio_indices"] = _vision_slots(
            length, 2, audio_tokens
        )
        inputs["audio_mask"] = audio_mask.astype("int32")
    return backbone, inputs


# === Encoder-decoder text and audio models ===


@_register("BartBackbone")
def _bart(rng):
    backbone = _models().BartBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return backbone, _seq2seq(rng)


@_register("EdRecBackbone")
def _edrec(rng):
    backbone = _models().EdRecBackbone(
        vocab_size=VOCAB,
        num_layers_enc=2,
        num_layers_dec=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )
    return backbone, _seq2seq(rng)


@_register("T5Backbone")
@_register("T5Backbone[relu]", use_gated_activation=False)
def _t5(rng, use_gated_activation=True):
    # Default T5 1.1 style: gated-GELU feedforward; `[relu]`: original T5.
    backbone = _models().T5Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        activation="gelu" if use_gated_activation else "relu",
        use_gated_activation=use_gated_activation,
    )
    return backbone, _seq2seq(rng)


_T5GEMMA = dict(
    vocabulary_size=VOCAB,
    encoder_hidden_dim=32,
    encoder_intermediate_dim=64,
    encoder_num_layers=2,
    encoder_num_attention_heads=4,
    encoder_num_key_value_heads=2,
    encoder_head_dim=8,
    encoder_layer_types=["sliding_attention", "full_attention"],
    decoder_hidden_dim=32,
    decoder_intermediate_dim=64,
    decoder_num_layers=2,
    decoder_num_attention_heads=4,
    decoder_num_key_value_heads=2,
    decoder_head_dim=8,
    decoder_layer_types=["sliding_attention", "full_attention"],
    sliding_window=4,
    cross_attention_hidden_size=32,
    attn_logit_softcapping=50.0,
    final_logit_softcapping=30.0,
)


@_register("T5GemmaBackbone")
def _t5gemma(rng):
    backbone = _models().T5GemmaBackbone(**_T5GEMMA)
    return backbone, _seq2seq(rng)


@_register("T5Gemma2Backbone")
def _t5gemma2(rng):
    backbone = _models().T5Gemma2Backbone(**_T5GEMMA, use_query_key_norm=True)
    return backbone, _seq2seq(rng)


@_register("MoonshineBackbone")
def _moonshine(rng):
    # Encoder: plain GELU feedforward; decoder: SwiGLU feedforward.
    samples = 1600
    backbone = _models().MoonshineBackbone(
        vocabulary_size=VOCAB,
        filter_dim=32,
        encoder_num_layers=2,
        decoder_num_layers=2,
        hidden_dim=32,
        intermediate_dim=64,
        encoder_num_heads=2,
        decoder_num_heads=2,
        feedforward_expansion_factor=2,
        encoder_use_swiglu_activation=False,
        decoder_use_swiglu_activation=True,
        max_position_embeddings=64,
        partial_rotary_factor=0.5,
    )
    encoder_mask = np.ones((BATCH, samples), dtype=bool)
    encoder_mask[1, samples // 2 :] = False
    inputs = {
        "encoder_input_values": _normal(rng, samples, 1),
        "encoder_padding_mask": encoder_mask,
        "decoder_token_ids": _tokens(rng),
        "decoder_padding_mask": _mask(),
    }
    return backbone, inputs


@_register("WhisperBackbone")
def _whisper(rng):
    backbone = _models().WhisperBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        num_mels=16,
        max_encoder_sequence_length=16,
        max_decoder_sequence_length=16,
    )
    inputs = {
        "encoder_features": _normal(rng, 16, 16),
        "decoder_token_ids": _tokens(rng),
        "decoder_padding_mask": _mask(),
    }
    return backbone, inputs


# === Image classification backbones ===


@_register("CSPNetBackbone")
def _cspnet(rng):
    backbone = _models().CSPNetBackbone(
        stem_filters=16,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_strides=2,
        stackwise_depth=[1, 2],
        stackwise_num_filters=[16, 32],
        image_shape=(32, 32, 3),
        down_growth=True,
        bottle_ratio=(0.5, 1.0),
        block_ratio=(1.0, 0.5),
        expand_ratio=(2.0, 1.0),
        block_type="dark_block",
        stage_type="csp",
        stem_padding="same",
    )
    return backbone, _images(rng, 32)


@_register("DenseNetBackbone")
def _densenet(rng):
    backbone = _models().DenseNetBackbone(
        stackwise_num_repeats=[2, 2, 2, 2],
        compression_ratio=0.5,
        growth_rate=4,
        image_shape=(32, 32, 3),
    )
    return backbone, _images(rng, 32)


@_register("EfficientNetBackbone")
def _efficientnet(rng):
    # A fused MBConv stage, then an unfused one with squeeze-and-excite.
    backbone = _models().EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3],
        stackwise_num_repeats=[1, 2],
        stackwise_input_filters=[16, 16],
        stackwise_output_filters=[16, 24],
        stackwise_expansion_ratios=[1, 4],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.25],
        stackwise_strides=[1, 2],
        stackwise_block_types=["fused", "unfused"],
        stackwise_force_input_filters=[0, 0],
        stackwise_nores_option=[False, False],
        width_coefficient=1.0,
        depth_coefficient=1.0,
        input_shape=(32, 32, 3),
        num_features=64,
    )
    return backbone, _images(rng, 32)


@_register("HGNetV2Backbone")
@_register("HGNetV2Backbone[light]", light=True)
def _hgnetv2(rng, light=False):
    backbone = _models().HGNetV2Backbone(
        stem_channels=[3, 8, 16],
        embedding_size=16,
        stackwise_stage_filters=[[16, 8, 32, 1, 1, 3], [32, 16, 64, 1, 1, 3]],
        depths=[1, 1],
        hidden_sizes=[32, 64],
        hidden_act="relu",
        use_learnable_affine_block=light,
        apply_downsample=[light, True],
        use_lightweight_conv_block=[light, light],
        image_shape=(32, 32, 3),
        out_features=["stem", "stage1", "stage2"],
    )
    return backbone, _images(rng, 32)


@_register("MobileNetBackbone")
def _mobilenet(rng):
    backbone = _models().MobileNetBackbone(
        stackwise_expansion=[[16, 24], [48, 48]],
        stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[16, 16], [24, 24]],
        stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]],
        stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[
            ["relu", "relu"],
            ["hard_swish", "hard_swish"],
            ["hard_swish"],
        ],
        stackwise_padding=[[1, 1], [2, 2]],
        output_num_filters=64,
        input_activation="hard_swish",
        output_activation="hard_swish",
        input_num_filters=16,
        image_shape=(32, 32, 3),
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        squeeze_and_excite=0.5,
        last_layer_filter=48,
    )
    return backbone, _images(rng, 32)


@_register("MobileNetV5Backbone")
@_register("MobileNetV5Backbone[attention]", attention=True)
def _mobilenetv5(rng, attention=False):
    from keras_hub.src.models.mobilenetv5.mobilenetv5_builder import (
        convert_arch_def_to_stackwise,
    )

    if attention:
        # Gemma 3n's vision tower, scaled down: universal inverted residual
        # blocks, multi-query attention blocks and the multi-scale fusion
        # adapter.
        image_size = 64
        arch_def = [
            ["er_r1_k3_s2_e4_c16"],
            [
                "uir_r1_a3_k5_s2_e4_c24",
                "uir_r1_a0_k0_s1_e2_c24",
                "mqa_r1_k3_h2_v2_s1_d8_c24",
            ],
            ["uir_r1_a5_k5_s2_e4_c32", "mqa_r1_k3_h2_s1_d8_c32"],
        ]
        kwargs = dict(
            stem_size=8,
            num_features=32,
            use_msfa=True,
            msfa_output_resolution=4,
            layer_scale_init_value=1e-5,
        )
    else:
        image_size = 32
        arch_def = [
            ["er_r1_k3_s2_e4_c16"],
            ["uir_r2_a0_k5_s2_e4_c24"],
        ]
        kwargs = dict(stem_size=8, use_msfa=False)
    backbone = _models().MobileNetV5Backbone(
        **convert_arch_def_to_stackwise(arch_def),
        image_shape=(image_size, image_size, 3),
        **kwargs,
    )
    return backbone, _images(rng, image_size)


@_register("ResNetBackbone")
@_register("ResNetBackbone[bottleneck]", block_type="bottleneck_block")
@_register("ResNetBackbone[v2]", use_pre_activation=True)
@_register("ResNetBackbone[vd]", block_type="bottleneck_block_vd")
def _resnet(rng, block_type="basic_block", use_pre_activation=False):
    backbone = _resnet_encoder(
        block_type=block_type,
        use_pre_activation=use_pre_activation,
        image_shape=(32, 32, 3),
    )
    return backbone, _images(rng, 32)


def _resnet_encoder(
    stages=3,
    block_type="basic_block",
    use_pre_activation=False,
    image_shape=(None, None, 3),
    stem_filters=64,
):
    vd = block_type.endswith("_vd")
    return _models().ResNetBackbone(
        # ResNetBackbone requires 64 filters in its first stack, and basic
        # blocks need as many out of the stem.
        input_conv_filters=[16, 16, stem_filters] if vd else [stem_filters],
        input_conv_kernel_sizes=[3, 3, 3] if vd else [7],
        stackwise_num_filters=[64, 16, 16, 8][:stages],
        stackwise_num_blocks=[2, 1, 1, 1][:stages],
        stackwise_num_strides=[1, 2, 2, 2][:stages],
        block_type=block_type,
        use_pre_activation=use_pre_activation,
        image_shape=image_shape,
    )


@_register("VGGBackbone")
def _vgg(rng):
    backbone = _models().VGGBackbone(
        stackwise_num_repeats=[2, 2, 3],
        stackwise_num_filters=[8, 16, 16],
        image_shape=(32, 32, 3),
    )
    return backbone, _images(rng, 32)


@_register("XceptionBackbone")
def _xception(rng):
    backbone = _models().XceptionBackbone(
        stackwise_conv_filters=[[16, 16], [32, 32], [32, 32]],
        stackwise_pooling=[False, True, False],
        image_shape=(32, 32, 3),
    )
    return backbone, _images(rng, 32)


@_register("FeaturePyramidBackbone")
def _feature_pyramid(rng):
    # `FeaturePyramidBackbone` is the base class of pyramid backbones; built
    # here directly, as a functional model of two strided convolutions.
    layers = keras.layers
    image = keras.Input(shape=(32, 32, 3), name="images")
    p1 = layers.Conv2D(8, 3, strides=2, padding="same", name="p1_conv")(image)
    p1 = layers.Activation("relu", name="p1_relu")(p1)
    p2 = layers.Conv2D(16, 3, strides=2, padding="same", name="p2_conv")(p1)
    p2 = layers.BatchNormalization(name="p2_bn")(p2)
    p2 = layers.Activation("swish", name="p2_swish")(p2)
    backbone = _models().FeaturePyramidBackbone(inputs=image, outputs=p2)
    backbone.pyramid_outputs = {"P1": p1, "P2": p2}
    return backbone, _images(rng, 32)


# === Vision transformers ===


@_register("DeiTBackbone")
def _deit(rng):
    backbone = _models().DeiTBackbone(
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )
    return backbone, _images(rng, 32)


@_register("DINOV2Backbone")
@_register("DINOV2Backbone[swiglu]", swiglu=True)
def _dinov2(rng, swiglu=False):
    # `[swiglu]`: SwiGLU feedforward (`use_swiglu_ffn`) and register tokens,
    # as in the giant DINOv2 models.
    backbone = _models().DINOV2Backbone(
        patch_size=14,
        num_layers=2,
        hidden_dim=32,
        num_heads=2,
        intermediate_dim=64,
        num_register_tokens=4 if swiglu else 0,
        use_swiglu_ffn=swiglu,
        image_shape=(42, 42, 3),
        position_embedding_shape=(70, 70, 3),
    )
    return backbone, {"images": _images(rng, 42)}


@_register("DINOV3Backbone")
@_register("DINOV3Backbone[gated]", gated=True)
def _dinov3(rng, gated=False):
    # `[gated]`: gated SiLU feedforward (`use_gated_mlp`), as in DINOv3 H+/7B.
    backbone = _models().DINOV3Backbone(
        patch_size=16,
        num_layers=2,
        hidden_dim=32,
        num_heads=2,
        intermediate_dim=64,
        num_register_tokens=4,
        hidden_activation="silu" if gated else "gelu",
        use_gated_mlp=gated,
        image_shape=(32, 32, 3),
    )
    return backbone, {"pixel_values": _images(rng, 32)}


@_register("MiTBackbone")
def _mit(rng):
    backbone = _mit_encoder()
    return backbone, _images(rng, 32)


def _mit_encoder():
    return _models().MiTBackbone(
        layerwise_depths=[2, 2],
        image_shape=(32, 32, 3),
        hidden_dims=[8, 16],
        num_layers=2,
        layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[4, 2],
        max_drop_path_rate=0.1,
        layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2],
    )


@_register("SwinTransformerBackbone")
def _swin(rng):
    backbone = _models().SwinTransformerBackbone(
        image_shape=(32, 32, 3),
        embed_dim=16,
        depths=(2, 2),
        num_heads=(2, 4),
        window_size=4,
    )
    return backbone, _images(rng, 32)


@_register("ViTBackbone")
def _vit(rng):
    backbone = _models().ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
    )
    return backbone, _images(rng, 32)


@_register("ViTDetBackbone")
def _vit_det(rng):
    backbone = _models().ViTDetBackbone(
        image_shape=(32, 32, 3),
        patch_size=4,
        hidden_size=16,
        num_layers=2,
        global_attention_layer_indices=[1],
        intermediate_dim=32,
        num_heads=2,
        num_output_channels=8,
        window_size=4,
    )
    return backbone, _images(rng, 32)


@_register("VideoPrismBackbone")
@_register("VideoPrismBackbone[text]", text=True)
def _video_prism(rng, text=False):
    # `[text]`: video-text model with a text tower and a dict input.
    frames, size = 2, 16
    backbone = _models().VideoPrismBackbone(
        num_frames=frames,
        patch_size=4,
        hidden_dim=16,
        intermediate_dim=32,
        num_heads=2,
        num_spatial_layers=1,
        num_temporal_layers=1,
        num_auxiliary_layers=1,
        vocabulary_size=VOCAB if text else 0,
        num_text_layers=1 if text else 0,
        attention_logit_soft_cap=50.0 if text else None,
        image_shape=(size, size, 3),
    )
    video = _images(rng, size, leading=(frames,))
    if not text:
        return backbone, video
    inputs = _text(rng)
    inputs["pixel_values"] = video
    return backbone, inputs


# === Image-text and multimodal models ===


@_register("CLIPBackbone", cls="CLIP")
@_register("MetaCLIP2Backbone", cls="MetaCLIP2")
def _clip(rng, cls):
    models = _models()
    vision_encoder = getattr(models, f"{cls}VisionEncoder")(
        patch_size=8,
        hidden_dim=32,
        num_layers=2,
        num_heads=2,
        intermediate_dim=64,
        image_shape=(32, 32, 3),
        name="vision_encoder",
    )
    text_encoder = getattr(models, f"{cls}TextEncoder")(
        vocabulary_size=VOCAB,
        embedding_dim=32,
        hidden_dim=32,
        num_layers=2,
        num_heads=2,
        intermediate_dim=64,
        max_sequence_length=SEQ,
        name="text_encoder",
    )
    backbone = getattr(models, f"{cls}Backbone")(
        vision_encoder=vision_encoder,
        text_encoder=text_encoder,
        projection_dim=16,
    )
    inputs = {"images": _images(rng, 32), "token_ids": _tokens(rng)}
    return backbone, inputs


@_register("SigLIPBackbone")
@_register("SigLIPBackbone[projection]", projection=True)
def _siglip(rng, projection=False):
    # `[projection]`: a text projection to a wider embedding (SigLIP 2 style).
    models = _models()
    vision_encoder = models.SigLIPVisionEncoder(
        patch_size=8,
        hidden_dim=64 if projection else 32,
        num_layers=2,
        num_heads=2,
        intermediate_dim=64,
        image_shape=(32, 32, 3),
        name="vision_encoder",
    )
    text_encoder = models.SigLIPTextEncoder(
        vocabulary_size=VOCAB,
        embedding_dim=32,
        hidden_dim=32,
        num_layers=2,
        num_heads=2,
        intermediate_dim=64,
        max_sequence_length=SEQ,
        projection_dim=64 if projection else None,
        name="text_encoder",
    )
    backbone = models.SigLIPBackbone(
        vision_encoder=vision_encoder, text_encoder=text_encoder
    )
    inputs = {"images": _images(rng, 32), "token_ids": _tokens(rng)}
    return backbone, inputs


@_register("BLIP2Backbone")
@_register("BLIP2Backbone[flan_t5]", flan_t5=True)
def _blip2(rng, flan_t5=False):
    models = _models()
    image_size, queries, hidden = 32, 2, 16
    vision_encoder = models.BLIP2VisionEncoder(
        image_size=image_size,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        use_patch_bias=True,
        use_class_token=True,
        use_mha_bias=True,
        use_mlp_bias=True,
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        initializer_range=0.02,
    )
    qformer = models.BLIP2QFormer(
        num_query_tokens=queries,
        num_layers=2,
        num_heads=2,
        hidden_dim=hidden,
        intermediate_dim=32,
        vision_dim=16,
        cross_attention_frequency=1,
        dropout=0.0,
        layer_norm_epsilon=1e-6,
    )
    if flan_t5:
        language_model = models.BLIP2FlanT5(
            vocabulary_size=VOCAB,
            num_layers=2,
            num_heads=2,
            hidden_dim=hidden,
            intermediate_dim=32,
            num_query_tokens=queries,
            qformer_hidden_dim=hidden,
            dropout=0.0,
        )
        inputs = _seq2seq(rng)
    else:
        language_model = models.BLIP2CustomOPT(
            vocabulary_size=VOCAB,
            num_layers=2,
            num_heads=2,
            hidden_dim=hidden,
            intermediate_dim=32,
            num_query_tokens=queries,
            qformer_hidden_dim=hidden,
            max_sequence_length=16,
            dropout=0.0,
        )
        inputs = _text(rng)
    backbone = models.BLIP2Backbone(
        vision_encoder=vision_encoder,
        qformer=qformer,
        language_model=language_model,
    )
    inputs["images"] = _images(rng, image_size)
    return backbone, inputs


@_register("PaliGemmaBackbone")
@_register(
    "PaliGemmaBackbone[gemma2]",
    query_head_dim_normalize=True,
    use_post_ffw_norm=True,
    use_post_attention_norm=True,
    final_logit_soft_cap=30.0,
    attention_logit_soft_cap=50.0,
    use_sliding_window_attention=True,
    sliding_window_size=4,
)
def _pali_gemma(rng, **kwargs):
    image_size = 16
    backbone = _models().PaliGemmaBackbone(
        vocabulary_size=VOCAB,
        image_size=image_size,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        head_dim=8,
        vit_patch_size=4,
        vit_num_layers=2,
        vit_num_heads=2,
        vit_hidden_dim=16,
        vit_intermediate_dim=32,
        **kwargs,
    )
    inputs = _text(rng)
    inputs["images"] = _images(rng, image_size)
    response_mask = np.zeros((BATCH, SEQ), dtype="int32")
    response_mask[:, SEQ // 2 :] = 1
    inputs["response_mask"] = response_mask * _mask()
    return backbone, inputs


@_register("PARSeqBackbone")
def _parseq(rng):
    models = _models()
    height, width, labels = 16, 32, 8
    image_encoder = models.ViTBackbone(
        image_shape=(height, width, 3),
        patch_size=(4, 8),
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        use_class_token=False,
        name="image_encoder",
    )
    backbone = models.PARSeqBackbone(
        image_encoder=image_encoder,
        vocabulary_size=VOCAB,
        max_label_length=labels,
        decoder_hidden_dim=32,
        num_decoder_layers=1,
        num_decoder_heads=2,
        decoder_mlp_dim=64,
        dropout_rate=0.0,
        attention_dropout=0.0,
    )
    inputs = _text(rng, length=labels)
    inputs["images"] = _images(rng, height, width)
    return backbone, inputs


# === Detection, segmentation, depth and generation ===


@_register("BASNetBackbone")
def _basnet(rng):
    # BASNet feeds its own `projection_filters`-channel stem into the
    # encoder's stacks: bottleneck blocks (with a projection shortcut) take
    # any width, so the bridge and decoder can stay narrow (8 * 8 filters).
    image_encoder = _resnet_encoder(
        stages=4, block_type="bottleneck_block", stem_filters=8
    )
    backbone = _models().BASNetBackbone(
        image_encoder=image_encoder,
        num_classes=1,
        image_shape=(32, 32, 3),
        projection_filters=8,
    )
    return backbone, _images(rng, 32)


@_register("DeepLabV3Backbone")
def _deeplab_v3(rng):
    backbone = _models().DeepLabV3Backbone(
        image_encoder=_resnet_encoder(stages=3),
        low_level_feature_key="P2",
        spatial_pyramid_pooling_key="P4",
        dilation_rates=[2, 4],
        upsampling_size=4,
        projection_filters=8,
        image_shape=(32, 32, 3),
    )
    return backbone, _images(rng, 32)


@_register("DepthAnythingBackbone")
def _depth_anything(rng):
    image_encoder = _models().DINOV2Backbone(
        patch_size=14,
        num_layers=4,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        image_shape=(126, 126, 3),
        position_embedding_shape=(126, 126, 3),
        apply_layernorm=True,
        name="image_encoder",
    )
    backbone = _models().DepthAnythingBackbone(
        image_encoder=image_encoder,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_dims=[8, 8, 16, 16],
        fusion_hidden_dim=16,
        head_hidden_dim=8,
        head_in_index=-1,
        feature_keys=["stage1", "stage2", "stage3", "stage4"],
    )
    return backbone, _images(rng, 126)


@_register("DFineBackbone")
def _d_fine(rng):
    models = _models()
    hgnetv2 = models.HGNetV2Backbone(
        stem_channels=[3, 8, 8],
        stackwise_stage_filters=[[8, 8, 16, 1, 1, 3], [16, 8, 32, 1, 1, 3]],
        apply_downsample=[False, True],
        use_lightweight_conv_block=[False, False],
        depths=[1, 1],
        hidden_sizes=[16, 32],
        embedding_size=8,
        use_learnable_affine_block=True,
        hidden_act="relu",
        image_shape=(None, None, 3),
        out_features=["stage1", "stage2"],
    )
    backbone = models.DFineBackbone(
        backbone=hgnetv2,
        decoder_in_channels=[16, 16],
        encoder_hidden_dim=16,
        num_denoising=0,
        num_labels=4,
        hidden_dim=16,
        learn_initial_query=False,
        num_queries=10,
        anchor_image_size=(32, 32),
        feat_strides=[4, 8],
        num_feature_levels=2,
        encoder_in_channels=[16, 32],
        encode_proj_layers=[1],
        num_attention_heads=2,
        encoder_ffn_dim=32,
        num_encoder_layers=1,
        hidden_expansion=0.5,
        depth_multiplier=0.5,
        eval_idx=-1,
        num_decoder_layers=2,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        decoder_n_points=[2, 2],
        lqe_hidden_dim=16,
        num_lqe_layers=2,
        out_features=["stage1", "stage2"],
        image_shape=(32, 32, 3),
        seed=0,
    )
    return backbone, _images(rng, 32)


@_register("RetinaNetBackbone")
def _retinanet(rng):
    # P3 to P7 feature pyramid: 128 x 128 images so that P7 is 1 x 1.
    backbone = _models().RetinaNetBackbone(
        image_encoder=_resnet_encoder(stages=4),
        min_level=3,
        max_level=7,
        use_p5=True,
        image_shape=(128, 128, 3),
    )
    return backbone, _images(rng, 128)


@_register("SegFormerBackbone")
def _segformer(rng):
    backbone = _models().SegFormerBackbone(
        image_encoder=_mit_encoder(), projection_filters=16
    )
    return backbone, _images(rng, 32)


@_register("SAMBackbone")
def _sam(rng):
    layers = _layers()
    image_size = 32
    image_encoder = _models().ViTDetBackbone(
        hidden_size=16,
        num_layers=2,
        intermediate_dim=32,
        num_heads=2,
        global_attention_layer_indices=[1],
        patch_size=4,
        num_output_channels=8,
        window_size=4,
        image_shape=(image_size, image_size, 3),
    )
    prompt_encoder = layers.SAMPromptEncoder(
        hidden_size=8,
        image_embedding_size=(8, 8),
        input_image_size=(image_size, image_size),
        mask_in_channels=16,
    )
    mask_decoder = layers.SAMMaskDecoder(
        num_layers=2,
        hidden_size=8,
        intermediate_dim=16,
        num_heads=2,
        embedding_dim=8,
        num_multimask_outputs=3,
        iou_head_depth=2,
        iou_head_hidden_dim=8,
    )
    backbone = _models().SAMBackbone(
        image_encoder=image_encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=mask_decoder,
    )
    points = rng.uniform(0, image_size, size=(BATCH, 1, 2))
    corners = np.sort(rng.uniform(0, image_size, size=(BATCH, 1, 2, 2)), 2)
    inputs = {
        "images": _images(rng, image_size),
        "points": points.astype("float32"),
        "labels": np.ones((BATCH, 1), dtype="float32"),
        "boxes": corners.astype("float32"),
        "masks": np.zeros((BATCH, 0, image_size, image_size, 1), "float32"),
    }
    return backbone, inputs


@_register("SAM3PromptableConceptBackbone")
def _sam3(rng):
    layers = _layers()
    image_size = 28
    vision_encoder = layers.SAM3VisionEncoder(
        image_shape=(image_size, image_size, 3),
        patch_size=14,
        num_layers=2,
        hidden_dim=16,
        intermediate_dim=32,
        num_heads=2,
        fpn_hidden_dim=16,
        fpn_scale_factors=[4.0, 2.0, 1.0, 0.5],
        pretrain_image_shape=(42, 42, 3),
        window_size=2,
        global_attn_indexes=[1, 2],
    )
    text_encoder = layers.SAM3TextEncoder(
        vocabulary_size=VOCAB,
        embedding_dim=16,
        hidden_dim=16,
        num_layers=2,
        num_heads=2,
        intermediate_dim=32,
    )
    geometry_encoder = layers.SAM3GeometryEncoder(
        num_layers=2,
        hidden_dim=16,
        intermediate_dim=32,
        num_heads=2,
        roi_size=7,
    )
    detr_encoder = layers.SAM3DetrEncoder(
        num_layers=2, hidden_dim=16, intermediate_dim=32, num_heads=2
    )
    detr_decoder = layers.SAM3DetrDecoder(
        image_shape=(image_size, image_size, 3),
        patch_size=14,
        num_layers=2,
        hidden_dim=16,
        intermediate_dim=32,
        num_heads=2,
        num_queries=8,
    )
    mask_decoder = layers.SAM3MaskDecoder(
        num_upsampling_stages=3, hidden_dim=16, num_heads=2
    )
    backbone = _models().SAM3PromptableConceptBackbone(
        vision_encoder=vision_encoder,
        text_encoder=text_encoder,
        geometry_encoder=geometry_encoder,
        detr_encoder=detr_encoder,
        detr_decoder=detr_decoder,
        mask_decoder=mask_decoder,
    )
    # Boxes: (batch index, center x, center y, width, height), normalized,
    # as SAM3PromptableConceptImageSegmenterPreprocessor makes them.
    boxes = np.concatenate(
        [
            np.arange(BATCH, dtype="float32").reshape(BATCH, 1, 1),
            rng.uniform(0.3, 0.7, (BATCH, 1, 2)),
            rng.uniform(0.1, 0.4, (BATCH, 1, 2)),
        ],
        axis=-1,
    )
    inputs = {
        "pixel_values": _images(rng, image_size),
        "token_ids": _tokens(rng, 32),
        "padding_mask": _mask(32),
        "boxes": boxes.astype("float32"),
        "box_labels": np.ones((BATCH, 1), dtype="int32"),
    }
    return backbone, inputs


@_register("FluxBackbone")
def _flux(rng):
    # Head dim 32 = sum(axes_dim); 4 x 4 image tokens and 8 text tokens.
    channels, text_tokens, side = 16, 8, 4
    backbone = _models().FluxBackbone(
        input_channels=channels,
        hidden_size=64,
        mlp_ratio=2.0,
        num_heads=2,
        depth=1,
        depth_single_blocks=1,
        axes_dim=[8, 12, 12],
        theta=10_000,
        use_bias=True,
        guidance_embed=True,
        image_shape=(side * side, channels),
        text_shape=(text_tokens, 32),
        image_ids_shape=(side * side, 3),
        text_ids_shape=(text_tokens, 3),
        y_shape=(32,),
    )
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    image_ids = np.stack(
        [np.zeros(side * side), rows.ravel(), cols.ravel()], axis=-1
    )
    inputs = {
        "image": _normal(rng, side * side, channels),
        "image_ids": np.tile(image_ids.astype("float32"), (BATCH, 1, 1)),
        "text": _normal(rng, text_tokens, 32),
        "text_ids": np.zeros((BATCH, text_tokens, 3), dtype="float32"),
        "y": _normal(rng, 32),
        "timesteps": rng.uniform(size=(BATCH,)).astype("float32"),
        "guidance": np.full((BATCH,), 3.5, dtype="float32"),
    }
    return backbone, inputs


@_register("StableDiffusion3Backbone")
def _stable_diffusion_3(rng):
    from keras_hub.src.models.vae.vae_backbone import VAEBackbone

    models = _models()
    image_size = 32
    # The latents are 8 times smaller than the images: 4 VAE levels, of 32
    # filters (the VAE's group norms use 32 groups).
    vae = VAEBackbone(
        [32, 32, 32, 32],
        [1, 1, 1, 1],
        [32, 32, 32, 32],
        [1, 1, 1, 1],
        sampler_method="mode",
        name="vae",
    )
    clip_l = models.CLIPTextEncoder(
        VOCAB, 16, 16, 2, 2, 32, "quick_gelu", -2, name="clip_l"
    )
    clip_g = models.CLIPTextEncoder(
        VOCAB, 32, 32, 2, 2, 64, "gelu", -2, name="clip_g"
    )
    backbone = models.StableDiffusion3Backbone(
        mmdit_patch_size=2,
        mmdit_hidden_dim=32,
        mmdit_num_layers=2,
        mmdit_num_heads=2,
        mmdit_position_size=32,
        mmdit_qk_norm=None,
        mmdit_dual_attention_indices=None,
        vae=vae,
        clip_l=clip_l,
        clip_g=clip_g,
        image_shape=(image_size, image_size, 3),
    )
    inputs = {
        "images": _images(rng, image_size),
        "latents": _normal(rng, *backbone.latent_shape[1:]),
        "clip_l_token_ids": _tokens(rng),
        "clip_l_negative_token_ids": _tokens(rng),
        "clip_g_token_ids": _tokens(rng),
        "clip_g_negative_token_ids": _tokens(rng),
        "num_steps": np.full((BATCH,), 4, dtype="int32"),
        "guidance_scale": np.full((BATCH,), 5.0, dtype="float32"),
    }
    return backbone, inputs
