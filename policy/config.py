"""Configs of the generator's jobs, one dataclass each, free of torch so pages can build them."""

from dataclasses import dataclass, field

from data.items import BUILTIN_SET


@dataclass
class GenerationConfig:
    """Sample K completions for each prompt of a prompt set, as items for annotators to rank."""

    prompt_set: str = field(default=BUILTIN_SET, metadata={"help": "prompt set to generate for"})
    generator_version: int | None = field(default=None, metadata={"help": "generator version id; none: the active one"})
    k: int = field(default=4, metadata={"help": "completions per prompt (2-9)"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling: keep the smallest token set with this much probability"})
    max_new_tokens: int = field(default=128, metadata={"help": "longest completion, in tokens"})
    seed: int = field(default=0, metadata={"help": "random seed; batch b uses seed + b"})
    prompts_per_batch: int = field(default=8, metadata={"help": "prompts sampled together (x K sequences)"})
    limit: int | None = field(default=None, metadata={"help": "only the first N prompts"})
    skip_done: bool = field(default=True, metadata={"help": "skip prompts this version already wrote completions for"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto"})

    def __post_init__(self):
        if not 2 <= self.k <= 9:
            raise ValueError(f"k must be between 2 and 9 completions per prompt, got {self.k}")
        if self.temperature <= 0:
            raise ValueError("temperature must be above 0 (sampling); use a small value such as 0.1 for near-greedy")
