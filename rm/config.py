"""The reward-model trainer's config: documented defaults, saved as reward_config.json next to each checkpoint."""

from dataclasses import dataclass, field

from data.names import name_list

WEIGHTINGS = ("none", "reliability")  # how much each ranking counts in training (data/reliability.py)
WEIGHTING_HELP = ("none: every ranking counts the same; reliability: each ranking weighted by its annotator's measured "
                  "reliability (agreement with the others, gold accuracy, self-consistency, shrunk towards the team's "
                  "with few observations: data/reliability.py)")
from training import EMBEDDED_ENCODER, PROCESSES_HELP, STRATEGY_HELP  # noqa: F401  (EMBEDDED_ENCODER: the default backbone)
from training.checkpointing import HELP as CHECKPOINTING_HELP
from training.precision import BF16_HELP, normalise as normalise_bf16


@dataclass
class RewardConfig:
    """Train a reward model on the rankings in the store (K-wise Bradley-Terry loss)."""

    backbone: str = field(default=EMBEDDED_ENCODER, metadata={
        "help": "embedded:all-MiniLM-L6-v2 (encoder, shipped), embedded:SmolLM2-135M-Instruct (decoder), "
                "or any Hugging Face id or local folder of either kind"})
    max_length: int = field(default=256, metadata={"help": "tokens per (prompt, completion); longer ones are truncated"})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW peak learning rate (linear warm-up, then decay)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps spent warming up the learning rate"})
    epochs: int = field(default=2, metadata={"help": "passes over the training rankings"})
    batch_size: int = field(default=16, metadata={"help": "completions encoded per step (whole rankings, so K-wise pairs stay together)"})
    validation_fraction: float = field(default=0.2, metadata={"help": "share of prompts held out (split by prompt)"})
    seed: int = field(default=0, metadata={"help": "split, shuffle and initialisation seed"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": CHECKPOINTING_HELP})
    processes: int = field(default=1, metadata={"help": PROCESSES_HELP})
    strategy: str = field(default="replicate", metadata={"help": STRATEGY_HELP})
    bf16: str = field(default="auto", metadata={"help": BF16_HELP})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto (CUDA when present)"})
    prompt_sets: list[str] = field(default_factory=list, metadata={"help": "prompt sets to train on, a,b or a JSON list; empty: all"})
    annotators: list[str] = field(default_factory=list, metadata={"help": "annotators to train on, a,b or a JSON list; empty: all"})
    weighting: str = field(default="none", metadata={"help": WEIGHTING_HELP})
    ties: str = field(default="ignore", metadata={
        "help": "ignore: tied completions give no pair (Bradley-Terry; TRL's docs drop ties); davidson: a tie pulls the "
                "two rewards together, with a learned tie rate nu (Davidson's model; rm/loss.py:davidson_loss)"})
    name: str = field(default="", metadata={"help": "version name: letters, digits, . _ -, not taken yet; empty: rm-<date>-<time>"})
    activate: bool = field(default=False, metadata={
        "help": "make the new version the active reward model if its held-out accuracy passes the gate (training.gate)"})
    learning_curve: bool = field(default=False, metadata={
        "help": "also train on a quarter and a half of the training prompts and report held-out accuracy at each size "
                "(about 75% more time): is it still rising with more rankings?"})

    def __post_init__(self):
        self.bf16 = normalise_bf16(self.bf16)
        self.prompt_sets, self.annotators = name_list(self.prompt_sets), name_list(self.annotators)
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if self.ties not in ("ignore", "davidson"):
            raise ValueError(f"ties must be ignore or davidson, got {self.ties!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be between 0 and 1, got {self.validation_fraction}")
        if self.batch_size < 2:
            raise ValueError("batch_size must hold at least one ranking of 2 completions")


@dataclass
class UncertaintyConfig:
    """Score the open items of the sets in the 'uncertain' queue order with the active reward model: how unsure it is of each."""

    prompt_sets: list[str] = field(default_factory=list, metadata={"help": "prompt sets, a,b or a JSON list; empty: every set in the 'uncertain' order"})
    rescore: bool = field(default=False, metadata={"help": "score again the items the active model has already scored"})
    batch_size: int = field(default=64, metadata={"help": "completions scored per forward pass"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto (CUDA when present)"})

    def __post_init__(self):
        self.prompt_sets = name_list(self.prompt_sets)
