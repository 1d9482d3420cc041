"""The backend for a model version: its `backend` field picks the engine, its `config` the options."""

import os

from workers.generation.base import Backend, BackendUnavailable

# A model's config names the environment variable that holds its API key. Only variables
# with this prefix may be named, so a model row cannot send DATABASE_URL or SECRET_KEY to
# whatever server its base_url points at.
API_KEY_ENV_PREFIX = os.environ.get("R1_API_KEY_ENV_PREFIX", "R1_KEY_")


def api_key_env_error(name) -> str | None:
    """Why `name` may not be used as a model's api_key_env, or None when it may."""
    if name is None:
        return None
    if not isinstance(name, str) or not name.startswith(API_KEY_ENV_PREFIX) or name == API_KEY_ENV_PREFIX:
        return (f"api_key_env must name a variable starting with {API_KEY_ENV_PREFIX} (R1_API_KEY_ENV_PREFIX), "
                f"not {name!r}")
    return None


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
        if error := api_key_env_error(key_env):
            raise BackendUnavailable(error)
        return OpenAIBackend(config["base_url"], uri, api_key=os.environ.get(key_env) if key_env else None,
                             **config.get("openai", {}))
    raise BackendUnavailable(f"unknown backend {backend!r}: use transformers, vllm or openai")
