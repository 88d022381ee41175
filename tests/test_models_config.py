"""Models (tiny from scratch, HF folders, LoRA) and config handling."""

import dataclasses
import json

import pytest

from iprkit.config import apply_overrides, field_docs, from_dict, help_text, load_config, save_run_config
from iprkit.errors import IprkitError
from iprkit.layout import RunLayout
from iprkit.models import CHAT_TEMPLATE, count_parameters, create_tiny, load_model
from iprkit.settings import ModelSettings, SFTSettings


def test_tiny_model_round_trip_and_assistant_mask(tmp_path, tw_experts):
    from iprkit.models import corpus

    path = create_tiny(corpus(tw_experts), tmp_path / "m", preset="tiny")
    model, tok = load_model(path)
    assert 1.0e6 < count_parameters(model) < 3.0e6
    msgs = tw_experts[0].messages()
    enc = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    marked = tok.decode([i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m])
    assert marked == "".join(m["content"] + "<|end|>" for m in msgs if m["role"] == "assistant")
    assert msgs[0]["content"][:30] not in marked  # observations are not assistant tokens


def test_not_a_causal_lm_and_missing_chat_template(tmp_path, tw_experts):
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    from iprkit.models import corpus

    path = create_tiny(corpus(tw_experts), tmp_path / "m")
    LlamaModel(LlamaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32)).save_pretrained(tmp_path / "enc")
    with pytest.raises(IprkitError, match="not a causal LM"):
        load_model(tmp_path / "enc")
    with pytest.raises(IprkitError, match="not a Hugging Face model folder"):
        load_model(tmp_path / "nothing")
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = None
    tok.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(IprkitError, match="no chat template"):
        load_model(tmp_path / "m")


def test_lora_wraps_and_trains_adapters_only(tmp_path, tw_experts):
    from iprkit.models import corpus

    path = create_tiny(corpus(tw_experts), tmp_path / "m")
    model, _ = load_model(path, ModelSettings(lora=True, lora_r=4), trainable=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_every_config_field_has_a_docstring():
    from iprkit import settings

    classes = [c for c in vars(settings).values() if dataclasses.is_dataclass(c) and c.__module__ == settings.__name__]
    assert len(classes) >= 8  # Model, Generation, SFT, MC, Pair, DPO, Method, Run
    for cls in classes:
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"
    text = help_text(SFTSettings)
    assert "model.lora_r = 16" in text and "LoRA rank." in text


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(IprkitError, match=r"unknown field\(s\) \['learning_rat'\]"):
        from_dict(SFTSettings, {"learning_rat": 1e-3})
    with pytest.raises(IprkitError, match="field 'batch_size' of SFTSettings must be int, got 'eight'"):
        from_dict(SFTSettings, {"batch_size": "eight"})
    with pytest.raises(IprkitError, match=r"config\.model: unknown field\(s\) \['size'\]"):
        from_dict(SFTSettings, {"model": {"size": 3}})
    yml = tmp_path / "c.yaml"
    yml.write_text("learning_rate: 0.001\nmodel:\n  lora: true\n")
    cfg = load_config(SFTSettings, yml, ["batch_size=4", "model.lora_r=8"])
    assert (cfg.learning_rate, cfg.batch_size, cfg.model.lora, cfg.model.lora_r) == (1e-3, 4, True, 8)
    with pytest.raises(IprkitError, match="expected KEY=VALUE"):
        apply_overrides({}, ["batch_size"])


def test_run_dir_with_a_different_config_is_refused(tmp_path):
    path = RunLayout(tmp_path).config
    save_run_config(path, SFTSettings())
    save_run_config(path, SFTSettings())  # the same config: fine (resume)
    with pytest.raises(IprkitError, match=r"holds a different config \(fields \['learning_rate'\] differ\)"):
        save_run_config(path, SFTSettings(learning_rate=1.0))
    assert json.loads(path.read_text())["learning_rate"] == 2e-5
