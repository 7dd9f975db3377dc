"""Configs of the generator's jobs, one dataclass each, free of torch so pages can build them."""

from dataclasses import dataclass, field
from typing import ClassVar

from data import jobs
from data.generators import parse_mix
from data.items import BUILTIN_SET
from data.rankings import LETTERS
from data.names import name_list
from rm.config import WEIGHTING_HELP, WEIGHTINGS

ALGORITHMS = ("rloo", "reinforce", "ppo", "grpo", "dr_grpo")  # the policy update's (policy/train.py)
# DPO's default KL budget, nats per sampled completion of 64 tokens: from the sweep in bench/README.md (the closed loop)
KL_BUDGET = 5.0
SPOT_CHECK_HELP = ("held-out pairs the reward model prefers the new answer on most, put in the annotation queue for "
                   "people to rank (data/spot_checks.py); the version is not made active while they disagree with it; "
                   "0: none")
from training import PROCESSES_HELP, STRATEGY_HELP, sharding_problem
from training.checkpointing import HELP as CHECKPOINTING_HELP
from training.gate import MIN_PAIRS
from training.precision import BF16_HELP, normalise as normalise_bf16
from training.quantization import HELP as QUANTIZE_HELP, problem as quantize_problem


@dataclass
class GenerationConfig:
    """Sample K completions for each prompt of a prompt set, as items for annotators to rank."""

    prompt_set: str = field(default=BUILTIN_SET, metadata={"help": "prompt set to generate for"})
    generator_version: int | None = field(default=None, metadata={"help": "generator version id; none: the active one"})
    k: int = field(default=4, metadata={"help": "completions per prompt (2-9)"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling: keep the smallest token set with this much probability"})
    max_new_tokens: int = field(default=768, metadata={
        "help": "longest completion, in tokens; 768 cuts 10% of the embedded generator's answers to the built-in prompts, "
                "512 14%, 128 74% (bench/README.md: the token cap); lower is faster on a CPU"})
    seed: int = field(default=0, metadata={"help": "random seed; batch b uses seed + b"})
    prompts_per_batch: int = field(default=8, metadata={"help": "prompts sampled together (x K sequences)"})
    limit: int | None = field(default=None, metadata={"help": "only the first N prompts"})
    skip_done: bool = field(default=True, metadata={
        "help": "skip prompts that already have an item from the same sources (this generator version, and the "
                "remote generators of the mix)"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto"})
    bf16: str = field(default="auto", metadata={"help": BF16_HELP + "; the softmax and sampling stay fp32"})
    remote: str = field(default="", metadata={
        "help": "remote generators writing part of each item, NAME=COUNT comma-separated (e.g. llama=2): arena-style "
                "items; the generator version writes the rest of the K, nothing when the counts add up to K"})
    versus_version: int | None = field(default=None, metadata={
        "help": "another generator version (id) writing --versus-k of each item's K answers: a head-to-head, whose "
                "rankings the Model leaderboard rates the two versions from (a new version against where it started)"})
    versus_k: int = field(default=0, metadata={"help": "how many of each item's K answers the versus version writes"})

    def __post_init__(self):
        self.bf16 = normalise_bf16(self.bf16)
        if not 2 <= self.k <= 9:
            raise ValueError(f"k must be between 2 and 9 completions per prompt, got {self.k}")
        remote = sum(parse_mix(self.remote).values())
        if remote > self.k:
            raise ValueError(f"the remote generators write {remote} completions per item, more than k = {self.k}")
        if self.versus_k < 0 or self.versus_k and self.versus_version is None:
            raise ValueError("a head-to-head needs the other version (versus_version, an id) and how many answers it "
                             f"writes (versus_k, at least 1), got {self.versus_version} and {self.versus_k}")
        if self.versus_k and remote + self.versus_k >= self.k:
            raise ValueError(f"the versus version ({self.versus_k}) and the remote generators ({remote}) write "
                             f"{remote + self.versus_k} of k = {self.k} answers: leave at least one to the generator version")
        if self.versus_k and self.versus_version == self.generator_version:
            raise ValueError("a head-to-head needs two different generator versions: pick another versus version")
        if self.temperature <= 0:
            raise ValueError("temperature must be above 0 (sampling); use a small value such as 0.1 for near-greedy")


ROUND_SETTINGS = ("k", "temperature", "top_p", "max_new_tokens", "prompts_per_batch", "remote", "bf16", "device")


def next_round(previous: dict | None, prompt_set: str, generator_version: int | None, items_made: int = 0,
               versus_version: int | None = None) -> GenerationConfig:
    """A generation round with a new generator version, sampled as the set's last round was (K, temperature, top-p,
    token cap, remote mix), so annotators rank items like the ones before, with a seed of its own (`fresh_seed`);
    the defaults for a set never generated. `previous`: the last round's arguments; `items_made`: the items it wrote;
    `versus_version`: a version (where the new one started) writing about half the K (K // 2, leaving the new version
    one at least beside any remote share)."""
    kept = {key: previous[key] for key in ROUND_SETTINGS if previous and key in previous}
    config = GenerationConfig(prompt_set=prompt_set, generator_version=generator_version,
                              seed=fresh_seed(previous, items_made), **kept)
    versus_k = min(config.k // 2, config.k - sum(parse_mix(config.remote).values()) - 1)
    if versus_version is not None and versus_version != generator_version and versus_k > 0:
        config.versus_version, config.versus_k = versus_version, versus_k
    return config


def next_round_of(db, prompt_set: str, generator_version: int | None, versus_version: int | None = None,
                  same_head_to_head: bool = False) -> tuple[GenerationConfig, dict | None]:
    """`next_round` after the set's newest finished generation job, and that job (None: the set was never generated).
    `same_head_to_head`: a last round that was a head-to-head gives its other version and share as well."""
    last = jobs.latest_done(db, "generate", prompt_set)
    made = int(((last or {}).get("result") or {}).get("items") or 0)
    config = next_round(last and last["args"], prompt_set, generator_version, made, versus_version)
    if same_head_to_head and last and last["args"].get("versus_k"):
        config.versus_version, config.versus_k = last["args"].get("versus_version"), int(last["args"]["versus_k"])
    return config, last


def fresh_seed(previous: dict | None, items_made: int) -> int:
    """The seed after the last one the set's last round used (its batch b sampled with seed + b): a version a step or
    two from the last one, sampled with the same seeds, writes many answers word for word again (a walk, 2026-12-07:
    9 of 15 after a one-step policy update). The default seed for a set never generated.

    >>> fresh_seed(None, 0), fresh_seed({"seed": 0, "prompts_per_batch": 8}, 20), fresh_seed({"seed": 3}, 0)
    (0, 3, 4)
    """
    if not previous:
        return GenerationConfig.seed
    batches = -(-items_made // int(previous.get("prompts_per_batch") or GenerationConfig.prompts_per_batch))
    return int(previous.get("seed") or 0) + max(batches, 1)


def held_out_default(prompts: int, wanted: int = 8) -> int:
    """Prompts to hold out of a set of `prompts` for the policy update's evaluation: `wanted`, or a quarter of a
    small set (at least one when the set has two prompts or more) so that most prompts still train.

    >>> [held_out_default(n) for n in (1, 2, 8, 40)]
    [0, 1, 2, 8]
    """
    return min(wanted, max(prompts // 4, 1 if prompts > 1 else 0))


def held_out_problem(prompts: int, eval_prompts: int) -> str | None:
    """Why a set of `prompts` prompts cannot hold out `eval_prompts` for the policy update's evaluation (None: it can)."""
    if prompts > eval_prompts:
        return None
    return (f"the prompt set has {prompts} prompts: the policy update needs more than the {eval_prompts} held out for "
            f"its evaluation; hold out at most {max(prompts - 1, 0)}, or add prompts to the set")


def token_cap_problem(max_new_tokens: int, ranked_cap: int) -> str | None:
    """Why a policy update rewarded by a reward model cannot take this token cap as asked (None: it can): below the cap
    the ranked completions were sampled with, the job raises it (policy.train.shaped_to_the_rankings), so a form
    says so before the job starts."""
    if not ranked_cap or max_new_tokens >= ranked_cap:
        return None
    return (f"max new tokens {max_new_tokens} is below the {ranked_cap} the ranked completions were sampled with: a "
            f"shorter cap cuts answers where the reward model never saw them cut, so the job would raise it to "
            f"{ranked_cap}; use at least {ranked_cap}")


def evaluation_pairs_problem(eval_prompts: int, k: int, activate: bool = False, prompts: int | None = None) -> str | None:
    """Why a policy update's held-out evaluation cannot make its version active by itself (None: it can): each held-out
    prompt gives K pairs (a new answer against the start's, same seed), and the gate reads a win rate from MIN_PAIRS.
    `activate`: said to a run asked to make its version active; `prompts`: the set's, when holding out more cannot help.

    >>> evaluation_pairs_problem(8, 4) is None, evaluation_pairs_problem(1, 2).split(", so")[0]
    (True, 'its held-out evaluation gives 1 prompt x K=2 = 2 pairs, below the 30 its gate reads a win rate from')
    >>> evaluation_pairs_problem(1, 2, prompts=5).split(": ", 1)[1]
    'the set has 5 prompts, too few to hold out 15 (one at least must train): hold out 4 with K=8, or import more prompts, or make it active by hand on the Models screen after reading what it writes'
    """
    pairs = eval_prompts * k
    if pairs >= MIN_PAIRS:
        return None
    outcome = "'Make it active' cannot make it active" if activate else "it cannot be made active by itself"
    needed = -(-MIN_PAIRS // k)  # held-out prompts at this K
    if prompts is not None and needed > prompts - 1:
        most = prompts - 1  # held out, one at least left to train on
        k_needed = -(-MIN_PAIRS // max(most, 1))
        remedy = (f"the set has {prompts} prompts, too few to hold out {needed} (one at least must train): "
                  + (f"hold out {most} with K={k_needed}, or " if most and k_needed <= 16 else "") + "import more prompts")
    else:
        remedy = f"hold out at least {needed} prompts (or raise K)"
    return (f"its held-out evaluation gives {eval_prompts} prompt{'s' * (eval_prompts != 1)} x K={k} = {pairs} pairs, "
            f"below the {MIN_PAIRS} its gate reads a win rate from, so {outcome}: {remedy}, or make it active by hand on "
            "the Models screen after reading what it writes")


JUDGED_K = len(LETTERS) // 2  # a judge's evaluation ranks K new and K starting answers at once


@dataclass
class PolicyConfig:
    """Policy-gradient update of a generator against a reward model, with a KL penalty to where it started."""

    LEARNING_RATES: ClassVar[dict[bool, float]] = {True: 2e-4, False: 1e-5}  # by lora: the default learning rate

    algorithm: str = field(default="rloo", metadata={
        "help": "rloo: REINFORCE with a leave-one-out baseline over each prompt's K samples; "
                "reinforce: REINFORCE with a moving-average baseline; ppo: clipped PPO with a value head and GAE; "
                "grpo: group-normalised advantages (R - group mean) / group std, each completion's log-prob averaged "
                "over its tokens; dr_grpo: Dr. GRPO, R - group mean, tokens summed over a constant (no length bias)"})
    generator_version: int | None = field(default=None, metadata={"help": "starting generator version id; none: the active one"})
    reward_version: int | None = field(default=None, metadata={"help": "reward model version id; none: the active one (unless a judge rewards)"})
    judge_remote: str = field(default="", metadata={
        "help": "remote generator (Data → Generate) that rewards instead of the reward model: an AI judge ranks each "
                "prompt's K answers judge_votes times, an answer's reward its share of the others it beat"})
    judge_version: int | None = field(default=None, metadata={"help": "local generator version that rewards as a judge instead (when no judge_remote)"})
    judge_votes: int = field(default=4, metadata={"help": "a judge's rankings of each prompt's answers, letters shuffled each time"})
    judge_max_new_tokens: int = field(default=256, metadata={"help": "longest critique of a local judge (a remote one: its max_tokens)"})
    prompt_set: str = field(default=BUILTIN_SET, metadata={"help": "prompts to train on"})
    eval_prompts: int = field(default=8, metadata={"help": "last N prompts of the set, held out for the before/after evaluation"})
    k: int = field(default=4, metadata={"help": "samples per prompt (RLOO, GRPO and Dr. GRPO need at least 2)"})
    prompts_per_step: int = field(default=4, metadata={"help": "prompts per rollout; a step samples prompts_per_step x k completions"})
    steps: int = field(default=20, metadata={"help": "policy updates (one rollout each)"})
    learning_rate: float | None = field(default=None, metadata={
        "help": "AdamW learning rate; none: 2e-4 with LoRA, 1e-5 for a full fine-tune (LEARNING_RATES)"})
    kl_coef: float = field(default=0.05, metadata={"help": "beta: weight of the KL penalty to the starting generator"})
    max_new_tokens: int = field(default=64, metadata={"help": "longest sampled completion"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature, also used when recomputing log-probs"})
    max_prompt_tokens: int = field(default=512, metadata={
        "help": "longest prompt in tokens, chat template included; a longer one is cut from the left, so its last turns "
                "and the assistant cue stay (bounds memory whatever the prompts)"})
    micro_batch_prompts: int = field(default=0, metadata={
        "help": "prompts whose K samples go through one forward and backward pass together; the step's gradient is "
                "the same, the activations in memory are those of this many prompts. 0: automatic (1 on a CPU, where "
                "memory is what bounds a step; on a GPU all of the step's prompts when they fit in half the free memory)"})
    no_eos_penalty: float = field(default=1.0, metadata={
        "help": "subtracted from the reward of a completion cut at max_new_tokens, in units of the batch's reward standard "
                "deviation (with normalize_rewards); switched off by the job when the reward model was trained on "
                "rankings of cut completions (it already scores them)"})
    normalize_rewards: bool = field(default=True, metadata={
        "help": "standardise the reward model's scores per batch (mean 0, std 1) before the KL and no-EOS terms, so "
                "beta and the penalty mean the same whatever the reward model's scale"})
    lora: bool = field(default=True, metadata={"help": "train a LoRA adapter (peft); the reference is the adapter switched off"})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank r (alpha = 2r)"})
    ppo_epochs: int = field(default=2, metadata={"help": "ppo: passes over each rollout"})
    clip_range: float = field(default=0.2, metadata={"help": "ppo: clip of the probability ratio"})
    value_clip_range: float = field(default=0.2, metadata={"help": "ppo: clip of the value update"})
    value_coef: float = field(default=0.1, metadata={"help": "ppo: weight of the value loss"})
    gae_lambda: float = field(default=0.95, metadata={"help": "ppo: GAE lambda (gamma is 1)"})
    spot_check: int = field(default=8, metadata={"help": SPOT_CHECK_HELP})
    spot_check_every: int = field(default=0, metadata={
        "help": "also evaluate every N steps and put that checkpoint's spot_check favourite pairs in the queue: the "
                "Policy update screen then charts people's agreement with the reward against sqrt(KL) per checkpoint "
                "(over-optimisation shows as agreement falling while KL grows); 0: the final version's only"})
    baseline_momentum: float = field(default=0.9, metadata={"help": "reinforce: momentum of the moving-average baseline"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": CHECKPOINTING_HELP})
    processes: int = field(default=1, metadata={"help": PROCESSES_HELP})
    strategy: str = field(default="replicate", metadata={"help": STRATEGY_HELP})
    bf16: str = field(default="auto", metadata={"help": BF16_HELP + "; log-probs are computed in fp32"})
    seed: int = field(default=0, metadata={"help": "sampling and prompt-order seed"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto (CUDA when present)"})
    name: str = field(default="", metadata={"help": "version name: letters, digits, . _ -, not taken yet; empty: policy-<date>-<time>"})
    activate: bool = field(default=False, metadata={"help": "make the new generator the active one if its held-out evaluation passes the gate (training.gate)"})

    def __post_init__(self):
        self.bf16 = normalise_bf16(self.bf16)
        if self.learning_rate is None:  # a full fine-tune at LoRA's rate wrecks a model
            self.learning_rate = self.LEARNING_RATES[self.lora]
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.algorithm in ("rloo", "grpo", "dr_grpo") and self.k < 2:
            raise ValueError(f"{self.algorithm} needs k >= 2 samples per prompt: its baseline is the prompt's other samples")
        if self.temperature <= 0:
            raise ValueError("temperature must be above 0")
        if self.micro_batch_prompts < 0 or self.max_prompt_tokens < 8:
            raise ValueError("micro_batch_prompts must be 0 (automatic) or more, and max_prompt_tokens at least 8")
        if self.judged and self.k > JUDGED_K:
            raise ValueError(f"a judge ranks a prompt's new and starting answers together when evaluating, 2K answers "
                             f"under at most {len(LETTERS)} letters: use k <= {JUDGED_K}")
        if self.spot_check_every < 0:
            raise ValueError("spot_check_every must be 0 (the final version only) or more steps")
        if self.judged and not 1 <= self.judge_votes <= 16:
            raise ValueError(f"judge_votes must be between 1 and 16, got {self.judge_votes}")
        if problem := sharding_problem(self.strategy, self.lora):
            raise ValueError(problem)

    @property
    def judged(self) -> bool:
        """An AI judge gives the reward, not a reward model."""
        return bool(self.judge_remote) or self.judge_version is not None


@dataclass
class SFTConfig:
    """Supervised fine-tuning of a generator on the annotators' demonstrations (response tokens only)."""

    LEARNING_RATES: ClassVar[dict[bool, float]] = {False: 5e-5, True: 2e-4}  # by lora: the default learning rate

    generator_version: int | None = field(default=None, metadata={"help": "generator version to start from; none: the active one"})
    prompt_sets: list[str] = field(default_factory=list, metadata={"help": "prompt sets, a,b or a JSON list; empty: all demonstrations"})
    epochs: int = field(default=3, metadata={"help": "most passes over the demonstrations (early stop may end sooner)"})
    learning_rate: float | None = field(default=None, metadata={
        "help": "AdamW peak learning rate (linear warm-up, then decay); none: 5e-5, or 2e-4 with LoRA (LEARNING_RATES)"})
    batch_size: int = field(default=8, metadata={"help": "demonstrations per step, batched by similar length"})
    max_length: int = field(default=512, metadata={"help": "tokens of prompt + response; longer ones are cut from the response's end"})
    validation_fraction: float = field(default=0.2, metadata={"help": "share of prompts held out for validation loss and perplexity"})
    early_stop_patience: int = field(default=1, metadata={"help": "stop after this many epochs without a better validation loss"})
    lora: bool = field(default=False, metadata={"help": "train a LoRA adapter (peft) instead of all weights"})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank r (alpha = 2r)"})
    quantize: str = field(default="none", metadata={"help": QUANTIZE_HELP})
    gradient_checkpointing: bool = field(default=False, metadata={"help": CHECKPOINTING_HELP})
    processes: int = field(default=1, metadata={"help": PROCESSES_HELP})
    strategy: str = field(default="replicate", metadata={"help": STRATEGY_HELP})
    bf16: str = field(default="auto", metadata={"help": BF16_HELP + "; the loss is computed in fp32"})
    seed: int = field(default=0, metadata={"help": "split and shuffle seed"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto (CUDA when present)"})
    name: str = field(default="", metadata={"help": "version name: letters, digits, . _ -, not taken yet; empty: sft-<date>-<time>"})
    activate: bool = field(default=False, metadata={"help": "make the new generator the active one if its held-out evaluation passes the gate (training.gate)"})

    def __post_init__(self):
        self.bf16 = normalise_bf16(self.bf16)
        self.prompt_sets = name_list(self.prompt_sets)
        if self.learning_rate is None:  # a full fine-tune at LoRA's rate wrecks a model
            self.learning_rate = self.LEARNING_RATES[self.lora]
        if problem := quantize_problem(self.quantize, self.lora, self.strategy) or sharding_problem(self.strategy, self.lora):
            raise ValueError(problem)


@dataclass
class DPOConfig:
    """Direct preference optimisation of a generator straight from the rankings (no reward model in between)."""

    # by lora, the default learning rate: LoRA's from the closed-loop sweep (bench/README.md), full weights' as in the DPO paper
    LEARNING_RATES: ClassVar[dict[bool, float]] = {True: 1.5e-4, False: 5e-7}
    EVAL_PROMPTS: ClassVar[int] = 16  # held-out prompts sampled for the KL checks and the win rate, at most

    generator_version: int | None = field(default=None, metadata={"help": "starting generator version id (also the reference); none: the active one"})
    prompt_sets: list[str] = field(default_factory=list, metadata={"help": "prompt sets whose rankings to learn from, a,b or a JSON list; empty: all"})
    annotators: list[str] = field(default_factory=list, metadata={"help": "annotators whose rankings to learn from, a,b or a JSON list; empty: all"})
    loss: str = field(default="sigmoid", metadata={
        "help": "sigmoid: DPO's -log sigma(beta * (chosen - rejected log-ratio)); ipo: IPO's squared distance to 1/(2 beta)"})
    beta: float = field(default=0.1, metadata={"help": "beta: how far from the reference the preference may pull (DPO's temperature)"})
    weighting: str = field(default="none", metadata={"help": WEIGHTING_HELP})
    ties: str = field(default="ignore", metadata={
        "help": "ignore: a tie gives no pair; equal: a tied pair is a preference of probability 1/2, pulling the two "
                "completions' log-ratios together (DPO with a soft label of 1/2; IPO's target 0)"})
    margin_weight: bool = field(default=False, metadata={
        "help": "weight each pair by its rank gap (D > C > A: D>A counts twice as much as D>C)"})
    epochs: int = field(default=3, metadata={"help": "passes over the training rankings (the KL budget stops it earlier)"})
    rankings_per_step: int = field(default=8, metadata={"help": "rankings per optimizer step (each ranking's pairs stay together)"})
    learning_rate: float | None = field(default=None, metadata={
        "help": "AdamW peak learning rate (linear warm-up, then decay); none: 1.5e-4 with LoRA (chosen by the "
                "closed-loop sweep, bench/README.md), 5e-7 for full weights (LEARNING_RATES)"})
    max_length: int = field(default=512, metadata={"help": "tokens of prompt + completion; longer completions are cut at the end"})
    validation_fraction: float = field(default=0.2, metadata={"help": "share of prompts held out for the held-out accuracy"})
    lora: bool = field(default=True, metadata={"help": "train a LoRA adapter (peft); the reference is the adapter switched off"})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank r (alpha = 2r)"})
    quantize: str = field(default="none", metadata={"help": QUANTIZE_HELP})
    eval_samples: int = field(default=2, metadata={
        "help": "samples per held-out prompt for the KL to the reference (and the reward model's win rate when one is "
                "active); 0: skip"})
    max_new_tokens: int = field(default=64, metadata={"help": "longest sampled completion in that evaluation"})
    kl_budget: float = field(default=KL_BUDGET, metadata={
        "help": "most KL to the reference (nats per sampled completion, on held-out prompts) the run may spend: "
                "checked kl_checks times during training; past it, training stops and the last checkpoint within "
                "the budget is kept; 0: no budget"})
    kl_checks: int = field(default=4, metadata={"help": "KL checks spread over the run (each samples eval_samples per held-out prompt)"})
    spot_check: int = field(default=8, metadata={"help": SPOT_CHECK_HELP})
    spot_check_checkpoints: bool = field(default=False, metadata={
        "help": "with an active reward model, each of the kl_checks also measures its win rate and puts that "
                "checkpoint's spot_check favourite pairs in the queue: the Policy update screen then charts people's "
                "agreement against sqrt(KL) per checkpoint (checks run even with no kl_budget)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": CHECKPOINTING_HELP})
    processes: int = field(default=1, metadata={"help": PROCESSES_HELP})
    strategy: str = field(default="replicate", metadata={"help": STRATEGY_HELP})
    bf16: str = field(default="auto", metadata={"help": BF16_HELP + "; log-probs are computed in fp32"})
    seed: int = field(default=0, metadata={"help": "split and shuffle seed"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto (CUDA when present)"})
    name: str = field(default="", metadata={"help": "version name: letters, digits, . _ -, not taken yet; empty: dpo-<date>-<time>"})
    activate: bool = field(default=False, metadata={"help": "make the new generator the active one if its held-out evaluation passes the gate (training.gate)"})

    def __post_init__(self):
        self.bf16 = normalise_bf16(self.bf16)
        self.prompt_sets, self.annotators = name_list(self.prompt_sets), name_list(self.annotators)
        if self.learning_rate is None:  # a full fine-tune at LoRA's rate wrecks a model
            self.learning_rate = self.LEARNING_RATES[self.lora]
        if problem := quantize_problem(self.quantize, self.lora, self.strategy) or sharding_problem(self.strategy, self.lora):
            raise ValueError(problem)
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if self.ties not in ("ignore", "equal"):
            raise ValueError(f"ties must be ignore or equal, got {self.ties!r}")
        if self.loss not in ("sigmoid", "ipo"):
            raise ValueError(f"loss must be sigmoid or ipo, got {self.loss!r}")
        if self.beta <= 0:
            raise ValueError("beta must be above 0")
        if self.rankings_per_step < 1 or self.epochs < 1:
            raise ValueError("rankings_per_step and epochs must be at least 1")
        if self.kl_budget < 0 or self.kl_checks < 0:
            raise ValueError("kl_budget and kl_checks must be 0 (off) or above")


@dataclass
class JudgeConfig:
    """An AI judge ranks a share of a set's items as a measured virtual annotator (policy/judge.py): its votes are
    kept apart from people's rankings and compared with them."""

    prompt_set: str = field(default=BUILTIN_SET, metadata={"help": "prompt set whose items to judge"})
    remote: str = field(default="", metadata={"help": "remote generator (Data → Generate) that judges; empty: a local generator version"})
    generator_version: int | None = field(default=None, metadata={"help": "local generator version that judges when no remote is named; none: the active one"})
    share: float = field(default=0.2, metadata={"help": "share of the set's items to judge (those people ranked first)"})
    votes: int = field(default=8, metadata={"help": "independent critiques-and-rankings per item, each with the letters shuffled; "
                                                    "agreement with people is reported for the first 1, 2, 4 and 8"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature of a local judge (a remote one uses its own)"})
    max_new_tokens: int = field(default=256, metadata={"help": "longest critique of a local judge (a remote one: its max_tokens)"})
    seed: int = field(default=0, metadata={"help": "which items, and each vote's letter order"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto (a local judge)"})

    def __post_init__(self):
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be above 0 and at most 1, got {self.share}")
        if not 1 <= self.votes <= 16:
            raise ValueError(f"votes must be between 1 and 16, got {self.votes}")
        if self.temperature <= 0:
            raise ValueError("temperature must be above 0: votes at temperature 0 would all be the same")
