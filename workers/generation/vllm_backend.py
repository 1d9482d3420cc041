"""Generation with vLLM (the `gpu` extra). Same interface as the other backends."""

from workers.generation.base import BackendError, Completion, Prompt, SamplingParams


class VLLMBackend:
    name = "vllm"

    def __init__(self, path: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, seed: int = 0):
        from vllm import LLM

        self.llm = LLM(model=path, tensor_parallel_size=tensor_parallel_size, seed=seed,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
        self.tokenizer = self.llm.get_tokenizer()

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def context_length(self) -> int | None:
        return self.llm.llm_engine.model_config.max_model_len

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self.tokenizer(self.render(prompt), add_special_tokens=False).input_ids)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VLLMSamplingParams

        sampling = VLLMSamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                                      max_tokens=params.max_tokens, seed=params.seed, stop=list(params.stop) or None)
        try:
            outputs = self.llm.generate([self.render(p) for p in prompts], sampling, use_tqdm=False)
        except RuntimeError as exc:
            raise BackendError(f"vLLM generation failed: {str(exc)[:300]}") from exc
        return [
            [Completion(o.text, len(out.prompt_token_ids), len(o.token_ids), o.finish_reason or "stop")
             for o in out.outputs]
            for out in outputs
        ]

    def close(self) -> None:
        self.llm = None
