"""Quick start: LeNet-5 on MNIST with PSP and with L2, a few epochs each.

    python -m applications.quickstart [--epochs 3] [--data-dir DIR]

Reads MNIST with `keras_psp.datasets` (tensorflow-datasets) from a local
data dir (`--data-dir`, else `TFDS_DATA_DIR`, else tfds' default); on
machines without network, prepare it first (see README). Prints each
model's test error and the PSP term of the loss. Settings follow the
paper's MNIST experiment: SGD lr 0.1, batch 100; L2 as SGD weight decay
1e-4 on all parameters (the authors' baseline); PSP λ = 1e-3 in the
authors' normalization (mean of z² per layer, λ divided by the number of
regularized layers). The default (3 epochs each, all of MNIST) takes
about 2 minutes on a 2-core CPU (TensorFlow backend, 2026-11-23: 110 s).
"""

import sys
import time

import applications
from applications import arguments


def parse_args(argv=None):
    parser = arguments.parser("applications.quickstart", __doc__)
    parser.add_argument("--epochs", type=arguments.positive_int, default=3)
    parser.add_argument(
        "--batch-size", type=arguments.positive_int, default=100
    )
    arguments.add_data_options(parser)
    parser.add_argument("--seed", type=arguments.seed, default=1)
    return parser.parse_args(argv)


def train(model, weight_decay, train_data, test_data, epochs):
    import keras

    from applications import run_callbacks

    model.compile(
        optimizer=keras.optimizers.SGD(0.1, weight_decay=weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    history = model.fit(
        train_data,
        epochs=epochs,
        validation_data=test_data,
        shuffle=False,  # the dataset shuffles itself, with a seed
        # The loss, the PSP term and the test accuracy, within 100 columns.
        callbacks=[run_callbacks.ShortProgbar()],
    )
    seconds = time.time() - start
    result = model.evaluate(test_data, verbose=0, return_dict=True)
    return history.history, result, seconds


def main(argv=None):
    args = parse_args(argv)
    applications.quiet_tensorflow()
    import keras

    from keras_psp import datasets
    from keras_psp.models import LeNet5

    keras.utils.set_random_seed(args.seed)
    try:
        splits = datasets.load(
            "mnist",
            args.batch_size,
            data_dir=args.data_dir,
            seed=args.seed,
            train_examples=args.train_examples,
            test_examples=args.test_examples,
            test_batch_size=1000,
        )
    except datasets.DatasetUnavailableError as error:
        sys.exit(f"error: {error}")
    train_data, test_data = splits.train, splits.test
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")

    print("\n== L2 (SGD weight decay 1e-4) ==")
    keras.utils.set_random_seed(args.seed)
    _, l2, l2_seconds = train(
        LeNet5(classifier_activation=None),
        1e-4,
        train_data,
        test_data,
        args.epochs,
    )

    print("\n== PSP (λ = 1e-3, authors' normalization) ==")
    keras.utils.set_random_seed(args.seed)
    psp_model = LeNet5(
        classifier_activation=None,
        psp_strength=1e-3,
        psp_reduction="mean",
        psp_divide_by_num_layers=True,
    )
    psp_history, psp, psp_seconds = train(
        psp_model, 0.0, train_data, test_data, args.epochs
    )

    print("\n== Summary ==")
    print(f"{'model':<6} {'test error %':>13} {'train PSP term':>15} {'s':>6}")
    rows = [
        ("L2", l2, "-", l2_seconds),
        ("PSP", psp, f"{psp_history['psp_loss'][-1]:.5f}", psp_seconds),
    ]
    for name, result, term, seconds in rows:
        error = 100 * (1 - result["accuracy"])
        print(f"{name:<6} {error:>13.2f} {term:>15} {seconds:>6.0f}")
    print(f"PSP term on the test set: {psp['psp_loss']:.5f}")


if __name__ == "__main__":
    main()
