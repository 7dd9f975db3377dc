"""8-bit and 4-bit loading of the generator's frozen base (bitsandbytes), for LoRA training only (QLoRA): an option
of SFT and DPO (`--quantize 4bit`). The base's linear layers are stored in 8 bits (LLM.int8) or 4 bits (NF4, double
quantisation), the adapter trains in fp32 on top, and the saved version is the adapter alone, applied later to the
full-precision base. It exists to fit a bigger model in a GPU's memory; bitsandbytes also runs on a CPU, where it
is tested, but there a step's peak memory went up, not down (bench/README.md: the CPU path keeps dequantised
copies for the backward pass).

The policy update does not take it: it samples from a merged copy of the weights (`W_base + scale·BA`), which a
quantised base does not have.
"""

QUANTIZE = ("none", "8bit", "4bit")
HELP = ("load the frozen base in 8 or 4 bits (bitsandbytes; LoRA only, QLoRA) so a bigger model fits in a GPU's "
        "memory; on a CPU it runs, but a step's peak memory goes up, not down; none: as stored")


def problem(quantize: str, lora: bool, strategy: str = "replicate") -> str | None:
    """What quantised loading cannot do with these options, and what to choose instead; None when it can.

    >>> problem("4bit", lora=False)
    'a 4-bit base cannot be trained itself: turn LoRA on (QLoRA), or quantize none'
    >>> problem("8bit", lora=True) is None and problem("none", lora=False) is None
    True
    """
    if quantize not in QUANTIZE:
        return f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}"
    if quantize != "none" and not lora:
        return f"{ {'8bit': 'an 8-bit', '4bit': 'a 4-bit'}[quantize]} base cannot be trained itself: turn LoRA on (QLoRA), or quantize none"
    if quantize != "none" and strategy == "shard":
        return "a quantised base is not sharded: replicate it, or quantize none"
    return None


def job_fact(quantize: str) -> str:
    """What a job's card says of its base weights."""
    return f"{quantize} (bitsandbytes), a LoRA adapter trained on them"


def bnb_config(quantize: str, compute_dtype):
    """transformers' BitsAndBytesConfig for `quantize`, None for none."""
    if quantize == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def is_quantized(model) -> bool:
    return bool(getattr(model, "is_quantized", False) or getattr(getattr(model, "base_model", None), "is_quantized", False))


def prepare(model, gradient_checkpointing: bool):
    """peft's preparation of a quantised base for training: norms and embeddings in fp32, input gradients on."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                           gradient_checkpointing_kwargs={"use_reentrant": False})
