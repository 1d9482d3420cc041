"""A transformers model whose chat template opens <think> in the generation prompt (as DeepSeek-R1's
distilled models' templates do): its completion starts inside the reasoning, and is split into
reasoning and answer exactly as DeepSeek's API answer is on the OpenAI path."""

import pytest

from workers.generation.base import SamplingParams, join_reasoning

pytest.importorskip("transformers")

REASONING = "2 + 2 = 4, so the answer is 4."
ANSWER = "The answer is \\boxed{4}."
QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory):
    """The tiny model, its chat template opening <think>, taught one answer in R1's chat format (a few
    seconds of plain gradient steps: greedy decoding then says it back)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.generation.tiny import CHAT_TEMPLATE, build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / "thinking", seed=0)
    tokenizer = AutoTokenizer.from_pretrained(path)
    opening = "'<|im_start|>assistant\\n'"
    tokenizer.chat_template = CHAT_TEMPLATE.replace(opening, opening[:-1] + "<think>\\n'")
    tokenizer.save_pretrained(path)
    rendered = tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    said = f"{REASONING}\n</think>\n{ANSWER}{tokenizer.eos_token}"
    ids = tokenizer(rendered + said, return_tensors="pt", add_special_tokens=False).input_ids
    model = AutoModelForCausalLM.from_pretrained(path)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = model(ids, labels=ids).loss
        if loss.item() < 0.05:
            break
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(path)
    return path


def test_a_template_that_opens_think_is_split_like_deepseeks_api_answer(thinking_model):
    from apps.rollouts.rows import rollout_row
    from workers.generation.transformers_backend import TransformersBackend
    from workers.rewards.base import Sample
    from workers.rewards.recipes import DEFAULT_RECIPES, Recipe

    backend = TransformersBackend(str(thinking_model), device="cpu")
    assert backend.render(QUESTION).endswith("<|im_start|>assistant\n<think>\n")  # the prompt opens the block
    [[completion]] = backend.generate([QUESTION], SamplingParams(temperature=0.0, max_tokens=64))

    assert completion.text == f"{REASONING}\n</think>\n{ANSWER}"  # no <think> of its own: the prompt had it
    assert completion.finish_reason == "stop"
    row = rollout_row(job_id=1, prompt_id=1, completion=completion.text, reasoning=completion.reasoning)
    api = rollout_row(job_id=1, prompt_id=1, completion=join_reasoning(REASONING, ANSWER), reasoning=REASONING)
    assert (row["reasoning"], row["answer"]) == (api["reasoning"], api["answer"]) == (REASONING, ANSWER)
    chat_math = Recipe.from_spec(DEFAULT_RECIPES["r1-chat-math"])
    assert chat_math.score(Sample(completion.text, reference="4"))["total"] == 2.0  # R1's chat format, right
