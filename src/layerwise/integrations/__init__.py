"""Use inside the frameworks people train with: Lightning, the Hugging Face ``Trainer``, Accelerate.

Each framework has its own module, imported on demand (``import layerwise`` loads none of them), and needs
its extra: ``layerwise.integrations.lightning`` (``pip install "layerwise[lightning]"``) and
``layerwise.integrations.huggingface`` (``pip install "layerwise[huggingface]"``). Accelerate needs no
module: ``layerwise.backward(..., backward_fn=accelerator.backward)`` and the standard optimizer contract
are the whole recipe (``docs/accelerate.md``).
"""

__all__: list[str] = []
