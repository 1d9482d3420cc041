"""The backend for a model version: its `backend` field picks the engine, its `config` the options."""

import os

from workers.generation.base import Backend, BackendUnavailable


def make_backend(backend: str, uri: str, config: dict | None = None) -> Backend:
    config = config or {}
    if backend == "transformers":
        from workers.generation.transformers_backend import TransformersBackend

        return TransformersBackend(uri, **config.get("transformers", {}))
    if backend == "vllm":
        try:
            from workers.generation.vllm_backend import VLLMBackend

            return VLLMBackend(uri, **config.get("vllm", {}))
        except ImportError:
            raise BackendUnavailable("vLLM is not installed here: install the `gpu` extra on a GPU worker") from None
    if backend == "openai":
        from workers.generation.openai_backend import OpenAIBackend

        key_env = config.get("api_key_env")  # the key itself never goes into the database
        return OpenAIBackend(config["base_url"], uri, api_key=os.environ.get(key_env) if key_env else None,
                             **config.get("openai", {}))
    raise BackendUnavailable(f"unknown backend {backend!r}: use transformers, vllm or openai")
