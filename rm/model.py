"""Reward model = backbone + scalar head. Encoders pool the text pair; decoders read the last real token."""

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


def resolve_backbone(backbone: str) -> str:
    """A loadable folder or Hugging Face id for a backbone name."""
    return resolve_model_path(backbone)


def backbone_kind(config) -> str:
    """'encoder' for masked-LM families (BERT, MiniLM, RoBERTa, ...), else 'decoder' (Llama, SmolLM2, GPT-2, ...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "encoder" if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "decoder"


class RewardModel(nn.Module):
    def __init__(self, backbone: nn.Module, kind: str):
        super().__init__()
        disable_dropout(backbone)
        self.backbone = backbone
        self.kind = kind
        self.head = nn.Linear(backbone.config.hidden_size, 1)
        nn.init.normal_(self.head.weight, std=1 / (backbone.config.hidden_size + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, attention_mask [N, T] -> rewards [N], the same whatever the padding side or amount."""
        mask = attention_mask.bool()
        position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)  # [N, T], counts real tokens only
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               **extra).last_hidden_state  # [N, T, H]
        if self.kind == "encoder":
            pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)  # [N, H] mean over real tokens
        else:
            last_real = (torch.arange(mask.shape[1], device=mask.device) * mask).argmax(1)  # [N]
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_real]  # [N, H]
        return self.head(pooled.to(self.head.weight.dtype)).squeeze(-1).float()  # [N]


def disable_dropout(model: nn.Module) -> None:
    """No dropout: a ranking's rewards must come from the same function to be compared (as in TRL),
    and sampling dropout masks alone took a quarter of a MiniLM training step on the CPU."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    for name in ("attention_probs_dropout_prob", "attention_dropout", "hidden_dropout_prob"):
        if hasattr(model.config, name):
            setattr(model.config, name, 0.0)


def new_reward_model(config: RewardConfig):
    """(model, tokenizer) with the pretrained backbone and a fresh head."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_backbone(config.backbone)
    tokenizer = _prepared_tokenizer(AutoTokenizer.from_pretrained(path))
    backbone = AutoModel.from_pretrained(path, dtype=torch.float32)
    return RewardModel(backbone, backbone_kind(backbone.config)), tokenizer


def _prepared_tokenizer(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def save_reward_model(model: RewardModel, tokenizer, config: RewardConfig, metrics: dict, folder: Path,
                      prompt_split: dict | None = None) -> None:
    """Everything needed to score, in one folder: backbone config, tokenizer, weights, config, metrics."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    model.backbone.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_model(model, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config.__dict__, indent=2))
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    (folder / SPLIT_FILE).write_text(json.dumps(prompt_split or {}))


def trained_prompt_ids(folder: str | Path) -> set[int]:
    path = Path(folder) / SPLIT_FILE
    return set(json.loads(path.read_text()).get("train", [])) if path.exists() else set()


def load_reward_model(folder: str | Path, device: str = "cpu"):
    """(model, tokenizer, config) from a folder written by save_reward_model."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = Path(folder)
    backbone_config = AutoConfig.from_pretrained(folder)
    model = RewardModel(AutoModel.from_config(backbone_config), backbone_kind(backbone_config))
    load_model(model, str(folder / WEIGHTS_FILE), device=str(device))
    config = RewardConfig(**json.loads((folder / CONFIG_FILE).read_text()))
    return model.to(device).eval(), _prepared_tokenizer(AutoTokenizer.from_pretrained(folder)), config
