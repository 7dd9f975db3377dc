"""8- and 4-bit bases under a LoRA adapter (QLoRA, issue 22): bitsandbytes runs on this CPU, so SFT and DPO on a
quantised tiny generator are trained here, and the adapter they save loads on the full-precision base."""

import pytest
import torch

from data import demonstrations, jobs, versions
from policy.config import DPOConfig, SFTConfig
from policy.models import load_generator
from tests.test_policy_sft import DEMOS
from training.quantization import is_quantized

pytest.importorskip("bitsandbytes")


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {name.replace(".default", ""): p.detach().float().clone() for name, p in model.named_parameters()
            if "lora_" in name}


def test_a_quantised_base_needs_lora_full_weights_and_no_sharding():
    with pytest.raises(ValueError, match="a 4-bit base cannot be trained itself: turn LoRA on"):
        SFTConfig(quantize="4bit")
    with pytest.raises(ValueError, match="an 8-bit base cannot be trained itself"):
        DPOConfig(lora=False, quantize="8bit")
    with pytest.raises(ValueError, match="not sharded"):
        SFTConfig(lora=True, quantize="4bit", strategy="shard")
    with pytest.raises(ValueError, match="quantize must be one of none, 8bit, 4bit"):
        DPOConfig(quantize="2bit")


def test_an_adapter_is_not_loaded_as_a_quantised_base(tiny_generator, tmp_path):
    from policy.models import with_lora_adapter

    model, tokenizer = load_generator(tiny_generator)
    with_lora_adapter(model, 4, bf16_base=False).save_pretrained(tmp_path / "adapter")
    with pytest.raises(ValueError, match="is a LoRA adapter: a quantised base is loaded from full weights"):
        load_generator(str(tmp_path / "adapter"), quantize="4bit")


@pytest.mark.slow
def test_sft_on_a_4bit_base_trains_an_adapter_that_loads_on_the_full_base(db, db_path, tiny_generator):
    versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    demonstrations.import_demonstrations(db, [demonstrations.Demonstration(p, r) for p, r in DEMOS], "s")
    job_id = jobs.create_job(db, "sft", {})
    from policy.sft import run_job

    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_job(db, SFTConfig(epochs=3, learning_rate=1e-2, bf16=False, lora=True, quantize="4bit",
                                            early_stop_patience=3, name="qlora"), job))
    done = jobs.get_job(db, job_id)
    assert done["status"] == "done", done["error"]
    assert "base weights: 4bit (bitsandbytes)" in done["log"]
    version = versions.get_version(db, done["result"]["version"])
    assert version["metrics"]["val/loss"] < version["metrics"]["val/loss_before"]
    reloaded, _ = load_generator(version["path"])  # the adapter on the fp32 base it was trained over, quantised
    assert not is_quantized(reloaded) and any(p.abs().sum() > 0 for n, p in lora_weights(reloaded).items() if "lora_B" in n)


def test_dpo_on_an_8bit_base_learns_the_preference_with_its_adapter_off_as_reference(tiny_generator):
    from policy.dpo import fit
    from training.rankings import RankingExample

    model, tokenizer = load_generator(tiny_generator, quantize="8bit")
    assert is_quantized(model) and "8bit" in type(model.model.layers[0].self_attn.q_proj).__name__.lower()
    examples = [RankingExample(i, f"question number {i}", ["a long and very fine answer", "no", "bad"], [[0], [1, 2]])
                for i in range(12)]
    config = DPOConfig(beta=0.5, learning_rate=5e-3, rankings_per_step=2, bf16=False, eval_samples=0, max_length=64,
                       epochs=3, quantize="8bit")
    trainer, metrics = fit(model, tokenizer, examples[:9], examples[9:], config)
    assert metrics["val/loss"] < metrics["val/loss_before"] and metrics["val/reward_margin"] > 0
    frozen = [p for n, p in trainer.policy.named_parameters() if "lora_" not in n]
    assert frozen and not any(p.requires_grad for p in frozen)  # only the adapter trains
