"""Generation with transformers, on CPU or GPU: batched, left-padded."""

import threading

from workers.generation.base import BackendError, Completion, Prompt, SamplingParams


class TransformersBackend:
    name = "transformers"

    def __init__(self, path: str, *, device: str | None = None, batch_size: int = 32):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.batch_size = batch_size
        eos = [self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id]
        self._stop_ids = {i for e in eos for i in (e if isinstance(e, list) else [e]) if i is not None}
        self._lock = threading.Lock()  # one generate at a time per loaded model

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self.tokenizer(self.render(prompt), add_special_tokens=False).input_ids)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        texts = [self.render(p) for p in prompts for _ in range(params.n)]
        flat: list[Completion] = []
        with self._lock:
            if params.seed is not None:
                self.torch.manual_seed(params.seed)
            for start in range(0, len(texts), self.batch_size):
                flat += self._generate_batch(texts[start:start + self.batch_size], params)
        return [flat[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]

    def _generate_batch(self, texts: list[str], params: SamplingParams) -> list[Completion]:
        torch = self.torch
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        try:
            with torch.no_grad():
                output = self.model.generate(
                    **batch,
                    max_new_tokens=params.max_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **sampling_options(params),
                )
        except (torch.OutOfMemoryError, RuntimeError) as exc:  # a batch too big for memory: retry smaller or later
            raise BackendError(f"generation failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
        new_tokens = output[:, batch.input_ids.shape[1]:]
        prompt_lengths = batch.attention_mask.sum(dim=1).tolist()
        return [self._completion(row, prompt_lengths[i], params) for i, row in enumerate(new_tokens.tolist())]

    def _completion(self, token_ids: list[int], prompt_tokens: int, params: SamplingParams) -> Completion:
        # generate() stops a sequence at an end-of-sequence token and pads it after that; a
        # sequence without one ran to max_new_tokens, and every token of it is generated text.
        end = next((i + 1 for i, t in enumerate(token_ids) if t in self._stop_ids), None)
        generated = token_ids[:end] if end else token_ids
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        finish = "stop" if end else "length"
        for stop in params.stop:
            cut = text.find(stop)
            if cut != -1:
                text, finish = text[:cut], "stop"
        return Completion(text, prompt_tokens, len(generated), finish)

    def close(self) -> None:
        self.model = None


def sampling_options(params: SamplingParams) -> dict:
    """generate() options for the temperature and top-p asked for, and nothing else.

    top_k=0 turns off transformers' default top-k of 50, which would otherwise cut the
    distribution silently: vLLM, TRL's GRPO sampling and OpenAI-style APIs apply no top-k,
    so evaluations would sample from another distribution than the one trained on.
    """
    if params.temperature <= 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
