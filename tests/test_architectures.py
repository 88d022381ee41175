"""Any Hugging Face causal LM through the in-process backend: tiny random models of several architectures
(sliding-window ones included) give the same greedy turns as ``model.generate``, on the first turn and on the
next one, where kept KV caches are reused (or, past a sliding window, deliberately not)."""

import pytest

from iprkit.backends import HFBackend, sliding_window
from iprkit.models import TINY_ARCHS, tiny_random, train_tokenizer
from iprkit.settings import GenerationSettings

CASES = [(a, {}) for a in TINY_ARCHS] + [("gemma2", {"sliding_window": 512})]  # a window wider than any turn


@pytest.fixture(scope="module")
def tok():
    texts = ["You are in a kitchen. There is a red apple on the table.", "Thought: I take it.\nAction: take apple",
             "The apple is gone. You see a door to the north."] * 20
    return train_tokenizer(texts, 400)


def _reference(model, tok, conv, n):
    ids = tok.apply_chat_template(conv, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("arch,overrides", CASES, ids=[a + ("-wide" if o else "") for a, o in CASES])
def test_greedy_turns_equal_generate_with_kept_caches(tok, arch, overrides):
    model = tiny_random(arch, tok, **overrides)
    n = 12
    backend = HFBackend(model, tok, GenerationSettings(max_new_tokens=n, batch_size=8))
    convs = [[{"role": "user", "content": "You are in a kitchen. There is a red apple on the table. " * k}] for k in (1, 3)]
    keys = ["a", "b"]
    first = backend.generate(convs, temperature=0.0, seed=0, keys=keys)
    assert first == [_reference(model, tok, c, n) for c in convs]
    convs = [c + [{"role": "assistant", "content": o}, {"role": "user", "content": "The apple is gone."}]
             for c, o in zip(convs, first)]
    second = backend.generate(convs, temperature=0.0, seed=0, keys=keys)
    assert second == [_reference(model, tok, c, n) for c in convs]
    window = sliding_window(model.config)
    if window is None or window > 200:
        assert backend.stats["reused_tokens"] > 0  # the second turn prefilled only its new tokens
    else:
        assert window == 32 and backend.stats["reused_tokens"] == 0  # past the window: whole prompts, exactly
