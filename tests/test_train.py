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
