"""Programs that the distribution tests run in fresh processes (device
counts and `TF_CONFIG` must be set before TensorFlow or JAX starts)."""
