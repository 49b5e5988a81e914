"""Measure what PSP costs per training step on a keras_hub language model.

    python -m applications.benchmark_keras_hub [--models llama gemma]

A keras_hub causal LM (random weights, no preprocessor: token ids in,
next-token loss out), its gated MLP reached by each of PSP's routes:
Llama's decoder holds its `silu` in `self.activation` (the "activation
attribute" route), Gemma's block calls `keras.activations.gelu` in its
code (the "code" route). Variants, built from the same seed:

- `none`: the plain model;
- `psp`: `keras_psp.enable_psp(model, 1e-3)` (the terms of every gate,
  padded positions masked out);
- `hand` (Llama only): the same terms written by hand, each decoder's
  `activation` replaced by a function that adds
  `keras_psp.psp_penalty(z, 1e-3)` with `add_loss` (no mask: the batch
  has none).

Each is timed as `applications.benchmark` times its models (compiled
train step on a fixed batch, variants in rotating rounds, median step
time, ratio to the first variant). The default run takes about 2 minutes
on each backend on a 2-core CPU.
"""

import statistics

import applications
from applications import arguments
from applications import benchmark
from applications.run_dir import write_json

MODELS = ("llama", "gemma")
VARIANTS = ("none", "psp", "hand")
STRENGTH = 1e-3
VOCABULARY, LAYERS, HIDDEN, INTERMEDIATE, HEADS = 256, 4, 64, 128, 4
SEQUENCE = 32
BATCH = 8


def parse_args(argv=None):
    parser = arguments.parser("applications.benchmark_keras_hub", __doc__)
    parser.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=list(MODELS),
        metavar="MODEL",
        help=f"models to measure, among {', '.join(MODELS)} (default: both)",
    )
    parser.add_argument(
        "--steps",
        type=arguments.positive_int,
        default=30,
        help="timed steps per variant and model, after "
        f"{benchmark.WARMUP_STEPS} warm-up steps",
    )
    parser.add_argument(
        "--steps-per-round",
        type=arguments.positive_int,
        default=5,
        help="steps a variant runs before the next one takes its turn",
    )
    parser.add_argument(
        "--out",
        type=arguments.writable_file,
        default=None,
        help="also write the table and step times to this JSON file",
    )
    return parser.parse_args(argv)


def _backbone(model_name):
    import keras_hub

    common = dict(
        vocabulary_size=VOCABULARY,
        num_layers=LAYERS,
        num_query_heads=HEADS,
        num_key_value_heads=1,
        hidden_dim=HIDDEN,
        intermediate_dim=INTERMEDIATE,
    )
    if model_name == "gemma":
        backbone = keras_hub.models.GemmaBackbone(
            head_dim=HIDDEN // HEADS, **common
        )
        return keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)
    backbone = keras_hub.models.LlamaBackbone(**common)
    return keras_hub.models.LlamaCausalLM(backbone, preprocessor=None)


def _by_hand(model):
    """Each decoder's gate activation adds its PSP term, written by hand."""
    from keras_psp import psp_penalty

    for decoder in model.backbone.transformer_layers:
        activation = decoder.activation

        def gate(z, decoder=decoder, activation=activation):
            decoder.add_loss(psp_penalty(z, STRENGTH))
            return activation(z)

        decoder.activation = gate
    return model


def build(model_name, variant, args):
    import keras

    import keras_psp

    keras.utils.set_random_seed(0)
    model = _backbone(model_name)
    if variant == "psp":
        keras_psp.enable_psp(model, STRENGTH)
    elif variant == "hand":
        model = _by_hand(model)
    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def batch(model_name, args):
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCABULARY, (BATCH, SEQUENCE + 1))
    x = {
        "token_ids": tokens[:, :-1].astype("int32"),
        "padding_mask": np.ones((BATCH, SEQUENCE), "int32"),
    }
    return x, tokens[:, 1:].astype("int32")


def main(argv=None):
    args = parse_args(argv)
    applications.quiet_tensorflow()
    import keras

    backend = keras.backend.backend()
    rows, all_seconds = [], {}
    print("| model | backend | variant | median step ms | ratio to none |")
    print("|---|---|---|---|---|", flush=True)
    for model_name in args.models:
        variants = VARIANTS if model_name == "llama" else VARIANTS[:2]
        seconds = benchmark.time_model(model_name, args, variants, build, batch)
        all_seconds[model_name] = seconds
        none = statistics.median(seconds["none"])
        for variant in variants:
            median = statistics.median(seconds[variant])
            row = {
                "model": model_name,
                "backend": backend,
                "variant": variant,
                "median_step_ms": 1000 * median,
                "ratio_to_none": none / median,
            }
            rows.append(row)
            print(
                f"| {model_name} | {backend} | {variant} "
                f"| {row['median_step_ms']:.1f} | {row['ratio_to_none']:.3f} |",
                flush=True,
            )
    if args.out:
        write_json(
            args.out,
            {
                "settings": vars(args),
                "versions": benchmark.versions(),
                "rows": rows,
                "step_seconds": all_seconds,
            },
        )
    return rows


if __name__ == "__main__":
    main()
