"""A tiny Qwen3-style model built on the spot: for machines without a GPU and without hub access.

Everything comes from the project's own synthetic problems: a byte-level BPE
tokenizer trained on their text, a randomly initialised Qwen3 of well under a
million parameters and, optionally, a short SFT that teaches the R1-Zero answer
format `<think> … </think> <answer> … </answer>` (GRPO from random init learns
nothing: every reward is 0). The result loads offline with
AutoTokenizer/AutoModelForCausalLM.from_pretrained(path). No Django here.

The measured facts behind these choices are in /work/shared/ML-NOTES.md.
"""

import json
import os
import tempfile
import time
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from workers.generation.templates import R1_ZERO
from workers.synthetic import arithmetic_dataset, arithmetic_work, countdown_dataset

RECIPE = "tiny-qwen3"

# The R1-Zero template (DeepSeek-R1 report, table 1). Prompts are plain text, not chat
# turns: R1-Zero starts from a base model, and TRL handles plain prompt/completion pairs
# without a chat template (it appends the EOS token to each completion, so the model
# learns to stop after </answer>).
# Trained on exactly the template the generation job renders, so the format carries over.
PROMPT_TEMPLATE = R1_ZERO

EOS, PAD, IM_START, IM_END = "<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [EOS, PAD, IM_START, IM_END]
# Ordinary added tokens, not special ones: TRL decodes completions with
# skip_special_tokens=True, and special tags would vanish before the format reward sees them.
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]

# ChatML, for chat-style use of the model. {% generation %} marks what the assistant
# says (its <|im_end|> included, so that the stop token is trained) for TRL's
# assistant_only_loss.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

TASKS = {"arithmetic": arithmetic_dataset, "countdown": countdown_dataset}
TOKENIZER_PROBLEMS = 2000  # per task: plenty of text for a 512-token vocabulary
SFT_BATCH_SIZE = 8  # small batches, more updates: the format is learnt in fewer seconds
SFT_LEARNING_RATE = 3e-3  # high, as suits a model this small trained from scratch


def r1_zero_prompt(question: str) -> str:
    return PROMPT_TEMPLATE.format(question=question)


def worked_completion(problem: dict) -> str:
    """`<think> 12 + 5 = 17, 17 * 2 = 34 </think> <answer> 34 </answer>`: a short worked computation."""
    metadata = problem.get("metadata") or {}
    steps = metadata.get("steps") or arithmetic_work(problem["question"])
    return f"<think> {', '.join(steps)} </think> <answer> {problem['answer']} </answer>"


def sft_examples(tasks=("arithmetic",), n: int = 1000, seed: int = 0) -> list[dict]:
    """{"prompt", "completion"} pairs: `n` problems per task, alternating between tasks."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; known: {sorted(TASKS)}")
    per_task = [TASKS[task](n, seed=seed) for task in tasks]
    problems = [problem for group in zip(*per_task) for problem in group]
    return [{"prompt": r1_zero_prompt(p["question"]), "completion": worked_completion(p)} for p in problems]


def train_tokenizer(texts, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of at most `vocab_size` tokens, special tokens and tags included.

    Fewer when the text runs out of pairs worth merging: the arithmetic problems alone give ~470.
    """
    tokenizer = Tokenizer(models.BPE())
    # Digits one at a time (as Qwen does): every number splits the same way, so a small
    # model can learn digit-wise arithmetic. Byte-level: any text encodes, nothing is <unk>.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TAGS),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The tags become whole tokens below: no merges are spent on their pieces.
    tokenizer.train_from_iterator((_without_tags(text) for text in texts), trainer=trainer)
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in TAGS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        padding_side="left",  # for batched generation; the attribute set later is not saved
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
    )


def _without_tags(text: str) -> str:
    for tag in TAGS:
        text = text.replace(tag, " ")
    return text


def build_model(tokenizer, hidden: int = 128, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                max_positions: int = 1024, seed: int = 0) -> Qwen3ForCausalLM:
    """A randomly initialised Qwen3 (not Qwen2: AutoTokenizer would swap in Qwen2Tokenizer for that)."""
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        layer_types=["full_attention"] * layers,  # one per layer; the default list is for 32
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen3ForCausalLM(config)
    # Stop at the end of text (plain prompts) and at the end of a chat turn.
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def sft_format(model, tokenizer, examples: list[dict], steps: int = 300, out_dir=None, seed: int = 0,
               batch_size: int = SFT_BATCH_SIZE, learning_rate: float = SFT_LEARNING_RATE) -> list[float]:
    """Teach the answer format with TRL's SFTTrainer on the CPU; the model is trained in place.

    `examples` are {"prompt", "completion"} pairs (loss on the completion only).
    Returns the logged training losses, first to last.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    threads = torch.get_num_threads()
    # One thread per core at most: more only contend (ML-NOTES: 4-5x slower).
    torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory() as scratch:
        config = SFTConfig(
            output_dir=str(out_dir or scratch),
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=max(1, steps // 10),
            logging_steps=max(1, steps // 10),
            save_strategy="no",
            seed=seed,
            # The CPU settings that ML-NOTES measured: without bf16=False it runs in bf16 autocast, 4x slower.
            bf16=False,
            use_cpu=True,
            activation_checkpointing=False,  # TRL defaults gradient_checkpointing (its old name) to True
            report_to="none",
            dataloader_pin_memory=False,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(examples),
                             processing_class=tokenizer)
        try:
            trainer.train()
        finally:
            torch.set_num_threads(threads)
    model.eval()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def build_tiny_model(out_dir, *, seed: int = 0, sft_steps: int = 0, tasks=("arithmetic",),
                     hidden: int = 128, layers: int = 2, vocab_size: int = 512) -> Path:
    """Train the tokenizer, build the model, SFT it if `sft_steps`, save both; return the folder."""
    started = time.monotonic()
    out = Path(out_dir)
    tasks = tuple(tasks)
    # The tokenizer sees what the model will: prompts in the template and worked answers.
    tokenizer_text = [example["prompt"] + example["completion"]
                      for example in sft_examples(tasks, TOKENIZER_PROBLEMS, seed=seed)]
    tokenizer = train_tokenizer(tokenizer_text, vocab_size=vocab_size)
    model = build_model(tokenizer, hidden=hidden, layers=layers, seed=seed)
    losses = []
    if sft_steps:
        # Seed + 1: problems the tokenizer's text did not include.
        examples = sft_examples(tasks, n=sft_steps * SFT_BATCH_SIZE // len(tasks) + 1, seed=seed + 1)
        losses = sft_format(model, tokenizer, examples, steps=sft_steps, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    manifest = {
        "recipe": RECIPE,
        "seed": seed,
        "tasks": list(tasks),
        "vocab_size": len(tokenizer),
        "hidden": hidden,
        "layers": layers,
        "parameters": sum(p.numel() for p in model.parameters()),
        "sft_steps": sft_steps,
        "sft_batch_size": SFT_BATCH_SIZE if sft_steps else None,
        "sft_losses": losses,
        "prompt_template": PROMPT_TEMPLATE,
        "build_seconds": round(time.monotonic() - started, 2),
    }
    (out / "r1studio.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def greedy_completions(model, tokenizer, prompts: list[str], max_new_tokens: int = 64,
                       batch_size: int = 32) -> list[str]:
    """Greedy completions of plain-text prompts, in left-padded batches."""
    texts = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True)
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = output[:, batch["input_ids"].shape[1]:]
        texts += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return texts
