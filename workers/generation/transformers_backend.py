"""Generation with transformers, on CPU or GPU: batched, left-padded.

With SamplingParams.logprobs set, each completion carries a TokenTrace (workers/tokens.py): the
log-probability of each chosen token, the entropy of the distribution it was sampled from and the
top alternatives, all of the *sampling* distribution: after temperature and top-p (greedy decoding:
the raw distribution). A recording logits processor sees that distribution: capture hands
generate() the temperature and top-p warpers itself, ahead of the recorder, and asks generate() for
none of its own (temperature 1.0, top_p 1.0), so the same warpers run in the same order and the
same seed samples the same tokens with or without capture. It keeps a few numbers per token, never
the (batch × vocabulary) scores of every step that output_scores would hold.
"""

import threading

import numpy as np

from workers.generation.base import BackendError, Completion, Prompt, SamplingParams
from workers.tokens import MAX_TOP_K, TokenBytes, TokenTrace


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
        self._token_bytes = TokenBytes(self.tokenizer)

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
        recorder = _Recorder(params.logprobs) if params.logprobs is not None else None
        options = sampling_options(params) if recorder is None else recorder.options(params)
        try:
            with torch.no_grad():
                output = self.model.generate(
                    **batch,
                    max_new_tokens=params.max_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **options,
                )
        except (torch.OutOfMemoryError, RuntimeError) as exc:  # a batch too big for memory: retry smaller or later
            raise BackendError(f"generation failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
        new_tokens = output[:, batch.input_ids.shape[1]:]
        prompt_lengths = batch.attention_mask.sum(dim=1).tolist()
        recorded = recorder.finish(new_tokens) if recorder is not None else None
        return [self._completion(row, prompt_lengths[i], params, recorded and (recorded, i))
                for i, row in enumerate(new_tokens.tolist())]

    def _completion(self, token_ids: list[int], prompt_tokens: int, params: SamplingParams,
                    recorded: tuple | None = None) -> Completion:
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
        trace = None
        if recorded:
            (logprobs, entropy, top_ids, top_logprobs), row = recorded
            n = len(generated)
            top = (top_ids[row, :n], top_logprobs[row, :n]) if top_ids is not None else (None, None)
            pieces = self._token_bytes.pieces(np.concatenate([generated, top[0].reshape(-1)])
                                              if top[0] is not None else generated)
            trace = TokenTrace(ids=generated, logprobs=logprobs[row, :n], entropy=entropy[row, :n],
                               top_ids=top[0], top_logprobs=top[1], pieces=pieces, entropy_kind="sampling")
        return Completion(text, prompt_tokens, len(generated), finish, tokens=trace)

    def close(self) -> None:
        self.model = None


class _Recorder:
    """A logits processor run last, on the distribution that is sampled from: per step, each row's entropy and
    top-k (ids, log-probabilities) are kept, and the log-softmax until the next step says which token was chosen."""

    def __init__(self, top_k: int):
        self.top_k = max(0, min(int(top_k), MAX_TOP_K))
        self.entropy, self.chosen, self.top_ids, self.top_logprobs = [], [], [], []
        self._last = None

    def options(self, params: SamplingParams) -> dict:
        """generate() options that sample exactly as sampling_options(params) does, with this recorder last."""
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        processors = []
        if params.temperature > 0:
            if params.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p=params.top_p, min_tokens_to_keep=1))
            options = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
        else:
            options = {"do_sample": False}
        return options | {"logits_processor": LogitsProcessorList([*processors, self])}

    def __call__(self, input_ids, scores):
        import torch

        if self._last is not None:  # the token chosen at the step before is the last input id now
            self.chosen.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1))
        logp = torch.log_softmax(scores.float(), dim=-1)
        self.entropy.append(torch.special.entr(logp.exp()).sum(dim=-1))
        if self.top_k:
            values, indices = logp.topk(self.top_k, dim=-1)
            self.top_ids.append(indices)
            self.top_logprobs.append(values)
        self._last = logp
        return scores

    def finish(self, new_tokens):
        """(logprobs, entropy, top_ids, top_logprobs) as numpy arrays (batch × steps [× k])."""
        import torch

        if self._last is not None:
            self.chosen.append(self._last.gather(1, new_tokens[:, len(self.chosen):len(self.chosen) + 1]).squeeze(1))
            self._last = None

        def stacked(steps):
            return torch.stack(steps, dim=1).cpu().numpy() if steps else None

        return stacked(self.chosen), stacked(self.entropy), stacked(self.top_ids), stacked(self.top_logprobs)


def sampling_options(params: SamplingParams) -> dict:
    """generate() options for the temperature and top-p asked for, and nothing else.

    top_k=0 turns off transformers' default top-k of 50, which would otherwise cut the
    distribution silently: vLLM, TRL's GRPO sampling and OpenAI-style APIs apply no top-k,
    so evaluations would sample from another distribution than the one trained on.
    """
    if params.temperature <= 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
