import keras
import numpy as np
import pytest

from applications import conversion_checks


def test_compare_reports_differences():
    a = np.zeros((2, 3), "float32")
    assert conversion_checks.compare([a], [a]) == (0.0, True)
    diff, equal = conversion_checks.compare([a], [a + 1e-3])
    assert not equal and diff == pytest.approx(1e-3)
    # Booleans and integers are compared as numbers.
    diff, equal = conversion_checks.compare([np.array([True])], [np.array([0])])
    assert (diff, equal) == (1.0, False)


def test_describe_keeps_the_cause_of_a_keras_call_error():
    error = ValueError(
        "Exception encountered when calling Dense.call().\n\n"
        "\x1b[1mshapes (2, 3) and (4, 5) are incompatible\x1b[0m\n\n"
        "Arguments received by Dense.call(): ..."
    )
    assert conversion_checks.describe(error) == (
        "ValueError: Exception encountered when calling Dense.call(). "
        "shapes (2, 3) and (4, 5) are incompatible"
    )
    assert conversion_checks.describe(KeyError()) == "KeyError"


def test_save_and_load_gives_an_equal_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = np.ones((1, 3), "float32")
    loaded = conversion_checks.save_and_load(model)
    diff, equal = conversion_checks.compare(
        conversion_checks.numpy_outputs(model(x)),
        conversion_checks.numpy_outputs(loaded(x)),
    )
    assert loaded is not model and equal and diff == 0.0


def test_linear_outputs_are_the_logits():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, activation="relu")(inputs)
    inner = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    outer_inputs = keras.Input((4,))
    model = keras.Model(
        outer_inputs,
        {
            "logits": inner(outer_inputs),  # a linear Dense, nested: 1
            "hidden": keras.layers.Dense(3, activation="tanh")(outer_inputs),
        },
    )
    assert conversion_checks.linear_outputs(model) == 1
