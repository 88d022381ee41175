"""IPR's DPO + NLL: observation turns are masked out of the log-probs, NLL sum vs mean."""

import math

import pytest
import torch

from iprkit.models import load_model
from iprkit.pairs import build_pairs
from iprkit.settings import DPOSettings, ModelSettings, PairSettings
from iprkit.train import IPRTrainer, MaskedPreferenceCollator, assistant_token_mask, pairs_dataset


def _pair(tw_experts):
    import copy

    e = next(t for t in tw_experts if len(t.steps) >= 2)
    alt = copy.deepcopy(e)
    alt.steps[0].action, alt.steps[0].thought, alt.steps[0].observation = "go nowhere", "I guess.", "You can't."
    alt.final_reward = 0.0
    pairs, _ = build_pairs(e, {0: alt}, {0: 1.0}, {0: 0.0}, PairSettings(outcome_pairs=False))
    assert pairs and len(pairs[0]["chosen"]) >= 3  # assistant, user (observation), assistant, ...
    return pairs[0]


def _trainer(smoke_model, pair, tmp_path, **cfg):
    from trl import DPOConfig

    model, tok = load_model(smoke_model, trainable=True)
    ref, _ = load_model(smoke_model)
    c = DPOSettings(**cfg)
    loss_type, weights = (["sigmoid", "sft"], [1.0, c.nll_weight]) if c.nll_weight else (["sigmoid"], [1.0])
    args = DPOConfig(output_dir=str(tmp_path / "t"), beta=c.beta, loss_type=loss_type, loss_weights=weights,
                     precompute_ref_log_probs=True, use_cpu=True, report_to="none", per_device_train_batch_size=1,
                     disable_tqdm=True, max_length=c.max_length, activation_checkpointing=False)
    trainer = IPRTrainer(model=model, ref_model=ref, args=args, train_dataset=pairs_dataset([pair]), processing_class=tok,
                         data_collator=MaskedPreferenceCollator(pad_token_id=tok.pad_token_id, max_length=c.max_length),
                         nll=c.nll, mask_observations=c.mask_observations)
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer, batch, tok


def _assistant_logps(model, tok, prompt, completion):
    """Sum of log-probs of the assistant tokens of the completion, computed directly."""
    ids = tok.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
    n_prompt = len(tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])
    mask = assistant_token_mask(tok, prompt, completion, n_prompt)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    keep = torch.tensor([0] * n_prompt + mask)[1:].bool()
    return lp[keep].sum().item(), int(keep.sum()), len(ids) - n_prompt


def test_observation_turns_are_masked(smoke_model, tw_experts, tmp_path):
    pair = _pair(tw_experts)
    trainer, batch, tok = _trainer(smoke_model, pair, tmp_path)
    chosen_mask = batch["completion_mask"][0].tolist()
    ids = batch["input_ids"][0].tolist()
    scored = tok.decode([t for t, m in zip(ids, chosen_mask) if m])
    assert scored == "".join(m["content"] + "<|end|>" for m in pair["chosen"] if m["role"] == "assistant")
    obs = next(m["content"] for m in pair["chosen"] if m["role"] == "user")
    assert obs not in scored  # the observation is context, never a target

    # the loss sees the mask: without it, observation tokens become targets and the loss changes
    base = trainer.compute_loss(trainer.model, batch).item()
    unmasked, _, _ = _trainer(smoke_model, pair, tmp_path / "u", mask_observations=False)
    ub = next(iter(unmasked.get_train_dataloader()))
    assert ub["completion_mask"][0].sum() > batch["completion_mask"][0].sum()
    assert not math.isclose(unmasked.compute_loss(unmasked.model, ub).item(), base, rel_tol=1e-4)


@pytest.mark.parametrize("nll", ["sum", "mean"])
def test_loss_is_dpo_plus_nll_sum_or_mean(smoke_model, tw_experts, tmp_path, nll):
    pair = _pair(tw_experts)
    trainer, batch, tok = _trainer(smoke_model, pair, tmp_path, nll=nll)
    loss = trainer.compute_loss(trainer.model, batch).item()
    # policy == reference at the start, so the DPO term is -log sigmoid(0) = log 2; the NLL is
    # computed here from assistant tokens only, so equality also shows observation targets carry no loss
    chosen_sum, n_tokens, _ = _assistant_logps(trainer.model, tok, pair["prompt"], pair["chosen"])
    expected_nll = -chosen_sum if nll == "sum" else -chosen_sum / n_tokens
    assert loss == pytest.approx(math.log(2) + expected_nll, rel=2e-3)
    plain, pb, _ = _trainer(smoke_model, pair, tmp_path / "p", nll_weight=0.0)
    assert plain.compute_loss(plain.model, pb).item() == pytest.approx(math.log(2), abs=5e-3)  # no NLL term


@pytest.mark.parametrize("on", [False, True])
def test_gradient_checkpointing_follows_the_config(smoke_model, tw_experts, tmp_path, monkeypatch, on):
    """TRL 1.x turns gradient checkpointing on by default (1.5x slower steps for the tiny model);
    SFT and DPO pass the config's value instead."""
    import trl

    from iprkit.settings import SFTSettings
    from iprkit.sft import train_sft
    from iprkit.train import train_dpo

    seen = []

    def record(self, *a, **k):
        seen.append(self.args.activation_checkpointing)
        raise KeyboardInterrupt  # stop before training

    monkeypatch.setattr(trl.SFTTrainer, "train", record)
    monkeypatch.setattr(IPRTrainer, "train", record)
    with pytest.raises(KeyboardInterrupt):
        train_sft(tw_experts[:4], SFTSettings(model=ModelSettings(name_or_path="tiny"), max_steps=1, gradient_checkpointing=on),
                  tmp_path / "trained", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_dpo([_pair(tw_experts)], smoke_model, smoke_model, DPOSettings(gradient_checkpointing=on), tmp_path / "dpo",
                  progress=False)
    assert seen == [on, on]


# -- LoRA through the pipeline (the paper preset on one GPU) -------------------------------------------------------

def _logits(model, tok, text="<|user|>You are in a kitchen.<|end|><|assistant|>Thought: go.\nAction: go west"):
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits.float()


@pytest.fixture(scope="module")
def lora_sft(tmp_path_factory, tw_experts):
    """A LoRA SFT of the tiny model: its adapter, and the SFT model with the adapter merged in."""
    from iprkit.settings import SFTSettings
    from iprkit.sft import train_sft

    torch.set_num_threads(2)
    cfg = SFTSettings(model=ModelSettings(lora=True, lora_r=4), max_steps=4, batch_size=4, learning_rate=5e-3,
                      assistant_only_loss=False)
    return train_sft(tw_experts[:16], cfg, tmp_path_factory.mktemp("lora-sft"), progress=False).parent


def test_lora_sft_keeps_its_adapter_and_writes_the_merged_sft_model(lora_sft):
    from peft import AutoPeftModelForCausalLM

    from iprkit.layout import SFTPaths
    from iprkit.models import adapter_base

    paths = SFTPaths(lora_sft)
    assert adapter_base(paths.adapter) is not None and adapter_base(paths.model) is None  # a plain model folder
    merged, tok = load_model(paths.model)
    peft = AutoPeftModelForCausalLM.from_pretrained(str(paths.adapter)).eval()
    init, _ = load_model(paths.init)
    assert torch.allclose(_logits(merged, tok), _logits(peft, tok), atol=1e-5)  # the SFT model is base + adapter
    assert not torch.allclose(_logits(merged, tok), _logits(init, tok), atol=1e-4)  # and training moved it


def test_lora_dpo_trains_adapters_over_the_sft_model_and_picks_its_reference(lora_sft, tw_experts, tmp_path, monkeypatch):
    """Iteration 1 and 2 of IPR with LoRA: adapters over the (merged) SFT model; the reference is the SFT model,
    i.e. the adapter-disabled policy (no second copy), and with reference=previous after iteration 1 a loaded copy
    of the previous policy."""
    import iprkit.train as train
    from iprkit.layout import SFTPaths
    from iprkit.models import adapter_base, merged_folder

    refs = []

    class Spy(train.IPRTrainer):
        def __init__(self, *a, ref_model=None, **kw):
            refs.append(ref_model)
            super().__init__(*a, ref_model=ref_model, **kw)

    monkeypatch.setattr(train, "IPRTrainer", Spy)
    sft, lora = SFTPaths(lora_sft).model, ModelSettings(lora=True, lora_r=4)
    cfg = DPOSettings(epochs=1.0, batch_size=1, learning_rate=1e-2, warmup_ratio=0.0, max_length=512)
    pairs = [_pair(tw_experts)]
    it1, it2, it2_prev = tmp_path / "it1", tmp_path / "it2", tmp_path / "it2-previous"
    train.train_dpo(pairs, sft, sft, cfg, it1, progress=False, model_cfg=lora)
    train.train_dpo(pairs, it1, sft, cfg, it2, progress=False, model_cfg=lora)  # reference = SFT (the paper's)
    train.train_dpo(pairs, it1, it1, cfg, it2_prev, progress=False, model_cfg=lora)  # reference = previous
    assert refs[0] is None and refs[1] is None and refs[2] is not None
    for out in (it1, it2, it2_prev):
        assert adapter_base(out).resolve() == sft.resolve()  # every policy: adapters over the SFT model
    merged, tok = load_model(merged_folder(it2))  # what transformers serve gets: the adapter merged into its base
    policy, _ = load_model(it2)
    base, _ = load_model(sft)
    assert torch.allclose(_logits(merged, tok), _logits(policy, tok), atol=1e-5)
    assert not torch.allclose(_logits(merged, tok), _logits(base, tok), atol=1e-4)


def test_transformers_serve_gets_a_lora_policy_merged(lora_sft, tmp_path):
    from iprkit.layout import SFTPaths
    from iprkit.models import adapter_base
    from iprkit.serving import LaunchedServer

    adapter = SFTPaths(lora_sft).adapter
    server = LaunchedServer("transformers", adapter, log_dir=tmp_path)
    assert server.adapter is None and server.model_dir == adapter.with_name("adapter.merged").resolve()
    assert str(server.model_dir) in server.command() and (server.model_dir / "config.json").exists()
    vllm = LaunchedServer("vllm", adapter, log_dir=tmp_path)  # vLLM loads the adapter by name over its base
    cmd = vllm.command()
    assert cmd[cmd.index("--model") + 1] == str(adapter_base(adapter)) and f"policy={adapter.resolve()}" in cmd


def test_headless_notebooks_show_training_steps_on_the_terminal(tw_experts, tmp_path, monkeypatch, capfd):
    """Under `iprkit batch` (IPRKIT_PROGRESS=terminal) the optimizer steps are a text bar on the process's stderr,
    not a notebook widget, and the Trainer's own bar is off."""
    from iprkit.settings import ModelSettings, SFTSettings
    from iprkit.sft import train_sft

    monkeypatch.setenv("IPRKIT_PROGRESS", "terminal")
    train_sft(tw_experts[:4], SFTSettings(model=ModelSettings(name_or_path="tiny"), max_steps=3, batch_size=2,
                                          assistant_only_loss=False), tmp_path / "trained", progress=True)
    err = capfd.readouterr().err
    assert "SFT steps" in err and "3/3" in err
