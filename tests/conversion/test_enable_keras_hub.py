"""`enable_psp` keeps a keras_hub task's workflow: its class, its
preprocessor (`fit` on raw strings), `generate`, LoRA and presets."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_psp
from keras_psp.conversion.enable import attachments as psp_terms
from tests import keras_hub_tasks


@pytest.mark.parametrize(
    "build", ["gemma_causal_lm", "gpt2_causal_lm", "bert_text_classifier"]
)
def test_a_task_keeps_its_class_preprocessor_and_generate(build):
    task = getattr(keras_hub_tasks, build)()
    cls, preprocessor = type(task), task.preprocessor
    prompts = keras_hub_tasks.raw_text()[:2]
    generates = hasattr(task, "generate")
    before = task.generate(prompts, max_length=6) if generates else None
    keras_psp.enable_psp(task, 1e-3)
    assert type(task) is cls and task.preprocessor is preprocessor
    assert psp_terms(task)
    if generates:
        # PSP changes nothing in the forward pass.
        assert task.generate(prompts, max_length=6) == before
    labels = None if generates else keras_hub_tasks.raw_labels()
    history = task.fit(
        keras_hub_tasks.raw_text(), labels, batch_size=4, verbose=0
    )
    assert history.history["psp_loss"][0] > 0
    keras_psp.disable_psp(task)
    assert not psp_terms(task) and type(task) is cls


@pytest.mark.parametrize("lora_first", [True, False])
def test_lora_and_psp_compose_in_either_order(lora_first):
    task = keras_hub_tasks.llama_causal_lm()
    if lora_first:
        task.backbone.enable_lora(2)
    trainable = [v.path for v in task.trainable_weights]
    keras_psp.enable_psp(task, 1e-3)
    if lora_first:
        # PSP adds no trainable weight.
        assert [v.path for v in task.trainable_weights] == trainable
    else:
        task.backbone.enable_lora(2)
        assert any("lora" in v.path for v in task.trainable_weights)
    history = task.fit(keras_hub_tasks.raw_text(), batch_size=4, verbose=0)
    assert history.history["psp_loss"][0] > 0


def test_a_preset_saved_with_psp_loads_in_plain_keras_hub(tmp_path):
    task = keras_hub_tasks.gemma_causal_lm()
    keras_psp.enable_psp(task, 1e-3)
    task.fit(keras_hub_tasks.raw_text(), batch_size=4, verbose=0)
    prompts = keras_hub_tasks.raw_text()[:2]
    expected = task.generate(prompts, max_length=6)
    task.save_to_preset(tmp_path / "preset")
    tokens = task.preprocessor.generate_preprocess(prompts)
    np.save(tmp_path / "logits.npy", keras.ops.convert_to_numpy(task(tokens)))
    preset = str(tmp_path / "preset")
    code = textwrap.dedent(
        f"""
        import sys
        import keras, keras_hub, numpy as np
        task = keras_hub.models.GemmaCausalLM.from_preset({preset!r})
        assert "keras_psp" not in sys.modules
        prompts = {prompts!r}
        assert task.generate(prompts, max_length=6) == {expected!r}
        tokens = task.preprocessor.generate_preprocess(prompts)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(task(tokens)),
            np.load({str(tmp_path / "logits.npy")!r}), rtol=1e-5, atol=1e-6)
        print("loaded plain")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert "loaded plain" in result.stdout, result.stderr[-2000:]


def test_find_strength_then_apply_psp_on_a_task_whose_preprocessor_ran():
    import tensorflow as tf

    task = keras_hub_tasks.gemma_causal_lm()
    # Preprocessed batches, as `fit` makes them from raw strings (running
    # the preprocessor also builds layers the task's config does not make).
    batches = (
        tf.data.Dataset.from_tensor_slices(list(keras_hub_tasks.raw_text()))
        .batch(4)
        .map(task.preprocessor)
    )
    strength = keras_psp.find_strength(task, batches, share=1e-3, steps=2)
    assert np.isfinite(strength) and strength > 0
    assert not keras_psp.psp_terms(task)  # left as it was
    copy = keras_psp.apply_psp(task, strength)
    assert type(copy) is type(task) and copy.preprocessor is not None
    history = copy.fit(keras_hub_tasks.raw_text(), batch_size=4, verbose=0)
    # The share asked for, at the start (measured on the same batches).
    first = history.history["psp_loss"][0] / history.history["loss"][0]
    assert 1e-4 < first < 1e-2
