"""Reward model = a stock transformers `*ForSequenceClassification` with one label.

Its folder is what `AutoModelForSequenceClassification.from_pretrained(folder)` loads as is (TRL, OpenRLHF
and vLLM read it too): encoders (BERT, MiniLM, ...) score the [CLS] token through BERT's pooler, decoders
(Llama, SmolLM2, ...) the last token that is not `pad_token_id`. Our extras sit beside the weights.
Folders written before this format (backbone + our own head, mean pooling) load through LegacyRewardModel.
"""

import json
from pathlib import Path

import torch
from torch import nn

from rm.config import RewardConfig
from training import resolve_model_path

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "reward_config.json"
METRICS_FILE = "metrics.json"
SPLIT_FILE = "prompt_split.json"  # which prompts were trained on: the rest are held out
DROPOUT_SETTINGS = ("attention_probs_dropout_prob", "attention_dropout", "hidden_dropout_prob", "classifier_dropout")


def resolve_backbone(backbone: str) -> str:
    """A loadable folder or Hugging Face id for a backbone name."""
    return resolve_model_path(backbone)


def backbone_kind(config) -> str:
    """'encoder' for masked-LM families (BERT, MiniLM, RoBERTa, ...), else 'decoder' (Llama, SmolLM2, GPT-2, ...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "encoder" if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "decoder"


def padding_free_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """[N, T] position ids counting real tokens only: the same scores whatever the padding side or amount."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


class RewardModel(nn.Module):
    """Rewards [N] from a stock sequence classifier with num_labels=1 (kept as `.classifier`, saved as is)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        disable_dropout(classifier)
        self.classifier = classifier
        self.kind = backbone_kind(classifier.config)

    @property
    def config(self):
        """The classifier's transformers config (its sizes decide the precision: training.precision)."""
        return self.classifier.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, attention_mask [N, T] -> rewards [N]."""
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        logits = self.classifier(input_ids=input_ids, attention_mask=attention_mask,
                                 position_ids=padding_free_positions(attention_mask), **extra).logits  # [N, 1]
        return logits.squeeze(-1).float()  # [N]


class LegacyRewardModel(nn.Module):
    """The format before stock classifiers: backbone + our linear head, mean pooling for encoders and the
    last real token for decoders. Only read, so that reward-model versions saved then keep scoring."""

    def __init__(self, backbone: nn.Module, kind: str):
        super().__init__()
        disable_dropout(backbone)
        self.backbone = backbone
        self.kind = kind
        self.head = nn.Linear(backbone.config.hidden_size, 1)

    @property
    def config(self):
        return self.backbone.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, attention_mask [N, T] -> rewards [N]."""
        mask = attention_mask.bool()
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=padding_free_positions(attention_mask), **extra).last_hidden_state  # [N, T, H]
        if self.kind == "encoder":
            pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)  # [N, H] mean over real tokens
        else:
            last_real = (torch.arange(mask.shape[1], device=mask.device) * mask).argmax(1)  # [N]
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_real]  # [N, H]
        return self.head(pooled.to(self.head.weight.dtype)).squeeze(-1).float()  # [N]


def disable_dropout(model: nn.Module) -> None:
    """No dropout: a ranking's rewards must come from the same function to be compared (as in TRL),
    and sampling dropout masks alone took a quarter of a MiniLM training step on the CPU. The config's
    probabilities go to 0 too, so the saved config.json gives these scores in train mode as well."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    for name in DROPOUT_SETTINGS:
        if hasattr(model.config, name):
            setattr(model.config, name, 0.0)


def new_reward_model(config: RewardConfig):
    """(model, tokenizer): the pretrained backbone (and BERT's pooler where the checkpoint has one) with a fresh head."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_backbone(config.backbone)
    tokenizer = _prepared_tokenizer(AutoTokenizer.from_pretrained(path))
    model_config = AutoConfig.from_pretrained(path, num_labels=1)
    model_config.pad_token_id = tokenizer.pad_token_id  # decoders score the last token that is not this one
    for name in DROPOUT_SETTINGS:
        if hasattr(model_config, name):
            setattr(model_config, name, 0.0)
    classifier = AutoModelForSequenceClassification.from_pretrained(path, config=model_config, dtype=torch.float32)
    head = scalar_head(classifier)
    nn.init.normal_(head.weight, std=1 / (model_config.hidden_size + 1) ** 0.5)
    if head.bias is not None:
        nn.init.zeros_(head.bias)
    return RewardModel(classifier), tokenizer


def scalar_head(classifier: nn.Module) -> nn.Linear:
    """The layer that writes the score: BERT's `classifier`, Llama's `score`, RoBERTa's `classifier.out_proj`."""
    return [m for m in classifier.modules() if isinstance(m, nn.Linear) and m.out_features == 1][-1]


def _prepared_tokenizer(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def save_reward_model(model: RewardModel, tokenizer, config: RewardConfig, metrics: dict, folder: Path,
                      prompt_split: dict | None = None, state_dict: dict | None = None) -> None:
    """The stock classifier's folder (config.json, weights, tokenizer), plus our config, metrics and split beside it.
    `state_dict`: the reward model's whole weights when it holds only a shard of them (training/parallel.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    classifier_state = None if state_dict is None else {
        name.removeprefix("classifier."): tensor for name, tensor in state_dict.items() if name.startswith("classifier.")}
    model.classifier.save_pretrained(folder, state_dict=classifier_state)
    tokenizer.save_pretrained(folder)
    (folder / CONFIG_FILE).write_text(json.dumps(config.__dict__, indent=2))
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    (folder / SPLIT_FILE).write_text(json.dumps(prompt_split or {}))


def trained_prompt_ids(folder: str | Path) -> set[int]:
    path = Path(folder) / SPLIT_FILE
    return set(json.loads(path.read_text()).get("train", [])) if path.exists() else set()


def is_legacy_folder(folder: Path) -> bool:
    """Saved before stock classifiers: our own `head.*` weights next to the backbone's."""
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS_FILE), "pt") as weights:
        return "head.weight" in weights.keys()


def load_reward_model(folder: str | Path, device: str = "cpu"):
    """(model, tokenizer, config) from a folder written by save_reward_model, in either format."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    if not (folder / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{folder} holds no {CONFIG_FILE}: it is not a reward model saved by this app; "
                                "train one on the Reward model page or pick another version")
    if is_legacy_folder(folder):
        model = _load_legacy(folder, device)
    else:
        model = RewardModel(AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32))
    config = RewardConfig(**json.loads((folder / CONFIG_FILE).read_text()))
    return model.to(device).eval(), _prepared_tokenizer(AutoTokenizer.from_pretrained(folder)), config


def _load_legacy(folder: Path, device: str) -> LegacyRewardModel:
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModel

    backbone_config = AutoConfig.from_pretrained(folder)
    model = LegacyRewardModel(AutoModel.from_config(backbone_config), backbone_kind(backbone_config))
    load_model(model, str(folder / WEIGHTS_FILE), device=str(device))
    return model
