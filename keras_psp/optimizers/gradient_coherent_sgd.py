"""`GradientCoherentSGD`: strong L1/L2, imposed only while gradients stay
coherent."""

import numbers

import keras
import numpy as np
from keras import ops

from keras_psp.validation import validate_non_negative


@keras.saving.register_keras_serializable(package="keras_psp")
class GradientCoherentSGD(keras.optimizers.SGD):
    """SGD with strong L1/L2 imposed only while gradients stay coherent.

    Park, Ho, Chang, Zhang, "Gradient-Coherent Strong Regularization for
    Deep Neural Networks", arXiv 1811.08056: strong L1 or L2 makes SGD fail
    (the loss's gradients vanish once the regularization dominates), so
    strong regularization is imposed "only when the gradients are kept
    coherent in the presence of strong regularization". The text available
    to us (the abstract and introduction; the method section could not be
    read) does not give the test, so this class makes it precise as
    follows. At every step, for every regularized weight tensor w with g
    the gradient of the model's loss (data loss plus any penalty already in
    it, e.g. PSP) and r the regularization's gradient,

        r = l1 · sign(w) + l2 · w          (penalty l1·Σ|w| + l2/2·Σw²),

    the step uses `g + r` when `⟨g, g + r⟩ > 0` (the regularized step still
    descends the loss: the two gradients are coherent) and `g` alone
    otherwise (the regularization would reverse the loss's descent). The
    decision is taken per tensor and per update step, on the gradient the
    step applies: with `gradient_accumulation_steps`, the accumulated one;
    with `clipnorm`/`clipvalue`, the clipped one (`r` is not clipped).
    The number of steps each tensor was regularized is kept in
    `regularized_steps` (see `regularized_share`). Regularized: the
    tensors of rank >= 2 (kernels), as `keras_psp.models`' L2 is; biases
    and normalization parameters are not.

    Under `tf.distribute` (e.g. `MirroredStrategy` on several GPUs) the
    decision is taken on the whole batch's gradient, summed over the
    replicas (one extra all-reduce of the regularized gradients per step),
    and `r` is added once: the steps are those of one device. Under
    `keras.distribution` (JAX) the gradient is already the whole batch's.

    Args:
        l1: the L1 strength (penalty `l1 · Σ|w|`), >= 0.
        l2: the L2 strength (penalty `l2/2 · Σ w²`, gradient `l2 · w`, as
            SGD's `weight_decay`), >= 0.
        learning_rate: as `keras.optimizers.SGD`.
        momentum: as `keras.optimizers.SGD`.
        nesterov: as `keras.optimizers.SGD`.
        **kwargs: as `keras.optimizers.SGD` (e.g. `weight_decay`,
            `clipnorm`).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(GradientCoherentSGD(l1=1e-2, learning_rate=0.1), "mse")
    >>> x, y = np.ones((8, 3)), np.ones((8, 1))
    >>> _ = model.fit(x, y, epochs=2, verbose=0)
    >>> share = model.optimizer.regularized_share()  # per kernel, in [0, 1]
    >>> len(share), bool(0 <= share[0] <= 1)
    (1, True)
    """

    def __init__(
        self,
        l1=0.0,
        l2=0.0,
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
        name="gradient_coherent_sgd",
        **kwargs,
    ):
        # SGD takes a negative or NaN rate and trains uphill or into NaN.
        if isinstance(learning_rate, numbers.Real):
            learning_rate = validate_non_negative(
                learning_rate, "learning_rate"
            )
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            name=name,
            **kwargs,
        )
        self.l1 = validate_non_negative(l1, "l1")
        self.l2 = validate_non_negative(l2, "l2")

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        # Steps on which each variable was regularized (0 for the others).
        self.regularized_steps = self.add_variable(
            shape=(len(variables),),
            initializer="zeros",
            dtype="float32",
            # Every replica takes the same decisions.
            aggregation="only_first_replica",
            name="regularized_steps",
        )

    @staticmethod
    def regularizes(variable):
        """Whether `variable` is regularized (rank >= 2: kernels)."""
        return len(variable.shape) >= 2

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Keras calls this with each step's final gradients: after gradient
        # accumulation (once per update, not per micro-batch) and clipping,
        # on every backend; under tf.distribute, before the replicas' sum.
        # A private hook (Keras has no public one there); the tests of this
        # optimizer on every backend catch a Keras that moves it.
        if self.l1 or self.l2:
            grads = self._coherent_gradients(grads, trainable_variables)
        return super()._backend_update_step(
            grads, trainable_variables, learning_rate
        )

    def _coherent_gradients(self, grads, variables):
        """`grads` with `r` added to each regularized tensor's gradient
        where the test passes; counts the decisions."""
        variables = list(variables)
        regularized = [
            grad is not None and self.regularizes(variable)
            for grad, variable in zip(grads, variables, strict=True)
        ]
        whole, replicas = _whole_batch_gradients(
            [g for g, r in zip(grads, regularized, strict=True) if r]
        )
        whole = iter(whole)
        coherent_grads, flags = [], []
        for grad, variable, is_regularized in zip(
            grads, variables, regularized, strict=True
        ):
            if not is_regularized:
                coherent_grads.append(grad)
                flags.append(ops.zeros((), "float32"))
                continue
            total = next(whole)
            weights = ops.cast(variable, grad.dtype)
            regularization = self.l1 * ops.sign(weights) + self.l2 * weights
            coherent = ops.sum(total * (total + regularization)) > 0
            # Each replica adds its share: the replicas' sum adds r once.
            coherent_grads.append(
                grad + ops.where(coherent, regularization / replicas, 0.0)
            )
            flags.append(ops.cast(coherent, "float32"))
        positions = [self._get_variable_index(v) for v in variables]
        counts = ops.scatter(
            ops.expand_dims(ops.convert_to_tensor(positions, "int32"), -1),
            ops.stack(flags),
            self.regularized_steps.shape,
        )
        self.regularized_steps.assign_add(counts)
        return coherent_grads

    def regularized_counts(self):
        """For each regularized variable (in the order of the model's
        trainable variables), the number of steps so far on which it was
        regularized: a float NumPy array."""
        counts = ops.convert_to_numpy(self.regularized_steps)
        return np.array(
            [
                count
                for count, variable in zip(
                    counts, self._trainable_variables, strict=True
                )
                if self.regularizes(variable)
            ],
            dtype=np.float64,
        )

    def regularized_share(self):
        """For each regularized variable, the share of the steps so far on
        which it was regularized (a list of floats, in the order of the
        model's trainable variables)."""
        steps = max(int(ops.convert_to_numpy(self.iterations)), 1)
        return [float(count) / steps for count in self.regularized_counts()]

    def get_config(self):
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}


def _whole_batch_gradients(grads):
    """`grads` summed over the replicas of a `tf.distribute` strategy, and
    the number of replicas; `grads` and 1 outside one.

    Keras' TensorFlow optimizer sums the replicas' gradients (each of its
    share of the batch's loss) only after `apply`; the coherence test
    needs the sum first.
    """
    if keras.backend.backend() != "tensorflow" or not grads:
        return grads, 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return grads, 1
    return (
        context.all_reduce(tf.distribute.ReduceOp.SUM, grads),
        context.num_replicas_in_sync,
    )
