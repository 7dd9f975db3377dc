"""bf16 = auto | true | false: bf16 only where the device runs it faster (issue 27)."""

import json
from types import SimpleNamespace

import pytest
import torch

from policy.config import DPOConfig, GenerationConfig, PolicyConfig, SFTConfig
from rm.config import RewardConfig
from training import precision
from training.precision import choose_precision, model_shape, normalise

CPU = torch.device("cpu")


def timings(fp32: float, bf16: float):
    calls = []

    def measure(shape):
        calls.append(shape)
        return {"fp32": fp32, "bf16": bf16}
    return measure, calls


def test_auto_picks_fp32_when_the_micro_benchmark_says_bf16_is_slower():
    measure, calls = timings(fp32=0.03, bf16=0.6)
    chosen = choose_precision("auto", CPU, (384, 1536), native=True, measure=measure)
    assert chosen.bf16 is False
    assert calls == [(384, 1536)]  # the model's own shapes were measured
    assert "slower than fp32" in chosen.reason


def test_auto_picks_bf16_when_the_micro_benchmark_says_bf16_is_faster():
    measure, _ = timings(fp32=0.03, bf16=0.01)
    chosen = choose_precision("auto", CPU, (576, 1536), native=True, measure=measure)
    assert chosen.bf16 is True
    assert "3.0x as fast" in chosen.reason and str(chosen).startswith("bf16 (")


def test_auto_on_a_cpu_without_native_bf16_is_fp32_without_measuring():
    measure, calls = timings(fp32=1.0, bf16=0.1)
    chosen = choose_precision("auto", CPU, native=False, measure=measure)
    assert chosen.bf16 is False and calls == []
    assert "no native bf16" in chosen.reason


def test_true_and_false_are_obeyed_and_true_warns_where_bf16_is_slow():
    assert choose_precision("false", CPU, native=True).bf16 is False
    forced = choose_precision("true", CPU, native=False)
    assert forced.bf16 is True and "several times slower" in forced.reason


def test_the_verdict_is_measured_once_per_machine_and_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_CACHE", str(tmp_path))
    runs = []
    monkeypatch.setattr(precision, "_time_products", lambda shape, dtype: runs.append((shape, dtype)) or 0.01)
    first = precision.measured_matmul_seconds((32, 64))
    again = precision.measured_matmul_seconds((32, 64))
    assert first == again == {"fp32": 0.01, "bf16": 0.01}
    assert len(runs) == 2  # fp32 and bf16, once
    cached = json.loads((tmp_path / "precision.json").read_text())
    assert len(cached) == 1 and next(iter(cached)).endswith("32x64")


def test_the_real_micro_benchmark_times_both_dtypes():
    seconds = precision._time_products((16, 32), torch.float32)
    assert 0 < seconds < 5


@pytest.mark.parametrize("config_cls", [RewardConfig, PolicyConfig, SFTConfig, DPOConfig, GenerationConfig])
def test_every_config_defaults_to_auto_and_reads_configs_saved_before(config_cls):
    assert config_cls().bf16 == "auto"
    assert config_cls(bf16=True).bf16 == "auto"  # the old default, saved next to older checkpoints
    assert config_cls(bf16=False).bf16 == "false"
    assert config_cls(bf16="TRUE").bf16 == "true"
    with pytest.raises(ValueError, match="auto, true or false"):
        config_cls(bf16="fast")


def test_normalise_refuses_nonsense():
    with pytest.raises(ValueError):
        normalise("maybe")


def test_model_shape_reads_the_config_and_falls_back():
    assert model_shape(SimpleNamespace(hidden_size=384, intermediate_size=1536)) == (384, 1536)
    assert model_shape(SimpleNamespace(n_embd=64)) == (64, 256)
    assert model_shape(None) == (576, 1536)


def test_lora_loads_the_generator_in_the_chosen_dtype(monkeypatch):
    from training.precision import load_dtype

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    precision._chosen.cache_clear()
    try:
        assert load_dtype(PolicyConfig(lora=True), CPU) == torch.float32  # auto on a CPU without bf16
        assert load_dtype(PolicyConfig(lora=True, bf16="true"), CPU) == torch.bfloat16
        assert load_dtype(PolicyConfig(lora=False, bf16="true"), CPU) == torch.float32  # full weights train in fp32
    finally:
        precision._chosen.cache_clear()


def test_a_job_logs_the_precision_it_chose(db, tiny_generator, monkeypatch):
    """The generation job says which precision it chose and why (its log; the card shows the log)."""
    from data import items, versions
    from data.jobs import create_job, running_job
    from policy.generate import run_generation

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    precision._chosen.cache_clear()
    items.ensure_prompt_set(db, "p")
    items.add_prompt(db, "p", "Say hi.")
    versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    config = GenerationConfig(prompt_set="p", k=2, max_new_tokens=4)
    job_id = create_job(db, "generate", {})
    try:
        with running_job(db.conn.execute("PRAGMA database_list").fetchone()[2], job_id) as (job, result):
            result.update(run_generation(job.db, config, job))
    finally:
        precision._chosen.cache_clear()
    log = db.execute("SELECT log FROM jobs WHERE id = ?", [job_id]).fetchone()[0]
    assert "precision: fp32 (this CPU" in log
