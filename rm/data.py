"""Rankings from the store, split by prompt, tokenised once, batched as whole rankings."""

import random
from dataclasses import dataclass

import torch

from data.rankings import ranking_to_pairs, tied_pairs
from training.rankings import RankingExample


@dataclass
class Batch:
    input_ids: torch.Tensor  # [N, T] every completion of the batch's rankings
    attention_mask: torch.Tensor  # [N, T]
    token_type_ids: torch.Tensor | None
    better: torch.Tensor  # [P] index into the N rewards
    worse: torch.Tensor  # [P]
    ranking_of_pair: torch.Tensor  # [P] which ranking of the batch each pair came from
    n_pairs: int
    n_tokens: int  # real (unpadded) tokens
    ranking_weight: torch.Tensor | None = None  # [R] each ranking's weight in the loss
    tied_a: torch.Tensor | None = None  # [Q] the pairs the rankings tie (for --ties davidson), indices into the N rewards
    tied_b: torch.Tensor | None = None  # [Q]
    ranking_of_tie: torch.Tensor | None = None  # [Q]

    def to(self, device):
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.input_ids), move(self.attention_mask), move(self.token_type_ids), move(self.better),
                     move(self.worse), move(self.ranking_of_pair), self.n_pairs, self.n_tokens, move(self.ranking_weight),
                     move(self.tied_a), move(self.tied_b), move(self.ranking_of_tie))


def encode(tokenizer, kind: str, prompts: list[str], completions: list[str], max_length: int) -> dict:
    """Token ids without padding. Encoders get the text pair [CLS] prompt [SEP] completion [SEP] (scored at [CLS]);
    decoders get the chat transcript, cut from the left so the completion's end (where the score is read) stays,
    never ending in the pad token (see without_trailing_pad)."""
    if kind == "encoder":
        return tokenizer(prompts, completions, truncation="longest_first", max_length=max_length)
    if tokenizer.chat_template:
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": c}], tokenize=False)
                 for p, c in zip(prompts, completions)]
    else:
        texts = [f"{p}\n{c}{tokenizer.eos_token or ''}" for p, c in zip(prompts, completions)]
    tokenizer.truncation_side = "left"
    encoded = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=not tokenizer.chat_template)
    return without_trailing_pad(encoded, tokenizer.pad_token_id)


def without_trailing_pad(encoded, pad_token_id: int):
    """Drop pad-id tokens from the end of each sequence. A stock *ForSequenceClassification decoder scores the
    last token that is not pad_token_id, and the pad token is often the EOS token: a transcript ending in it is
    read at the token before it. Ending there makes that token the last one, so the stock class, TRL's
    RewardTrainer (which appends EOS and pads) and our training all read the same position.

    >>> without_trailing_pad({"input_ids": [[5, 6, 0, 0], [0, 7]], "attention_mask": [[1, 1, 1, 1], [1, 1]]}, 0)
    {'input_ids': [[5, 6], [0, 7]], 'attention_mask': [[1, 1], [1, 1]]}
    """
    for i, ids in enumerate(encoded["input_ids"]):
        end = len(ids)
        while end > 1 and ids[end - 1] == pad_token_id:
            end -= 1
        for key in encoded.keys():
            encoded[key][i] = encoded[key][i][:end]
    return encoded


def make_batches(examples: list[RankingExample], tokenizer, kind: str, max_length: int, batch_size: int,
                 shuffle: bool, seed: int = 0) -> list[Batch]:
    """Whole rankings packed up to batch_size completions, rankings of similar length together (less padding)."""
    flat_prompts = [e.prompt for e in examples for _ in e.completions]
    flat_completions = [c for e in examples for c in e.completions]
    encoded = encode(tokenizer, kind, flat_prompts, flat_completions, max_length) if examples else {"input_ids": []}
    spans, start = [], 0
    for e in examples:
        spans.append((e, start, start + len(e.completions)))
        start += len(e.completions)
    spans.sort(key=lambda span: max(len(encoded["input_ids"][i]) for i in range(span[1], span[2])))
    groups, current, size = [], [], 0
    for span in spans:
        k = span[2] - span[1]
        if current and size + k > batch_size:
            groups.append(current)
            current, size = [], 0
        current.append(span)
        size += k
    if current:
        groups.append(current)
    if shuffle:
        random.Random(seed).shuffle(groups)
    return [_collate(group, encoded, tokenizer) for group in groups]


def _collate(spans, encoded, tokenizer) -> Batch:
    rows, better, worse, ranking_of_pair, tied_a, tied_b, ranking_of_tie = [], [], [], [], [], [], []
    for r, (example, start, end) in enumerate(spans):
        offset = len(rows)
        rows.extend(range(start, end))
        for pair in ranking_to_pairs(example.groups):
            better.append(offset + pair.chosen)
            worse.append(offset + pair.rejected)
            ranking_of_pair.append(r)
        for a, b in tied_pairs(example.groups):
            tied_a.append(offset + a)
            tied_b.append(offset + b)
            ranking_of_tie.append(r)
    features = [{key: encoded[key][i] for key in encoded.keys()} for i in rows]
    tokenizer.padding_side = "right"
    padded = tokenizer.pad(features, return_tensors="pt")
    long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    weights = [example.weight for example, _, _ in spans]
    return Batch(padded["input_ids"], padded["attention_mask"], padded.get("token_type_ids"), long(better), long(worse),
                 long(ranking_of_pair), len(better), int(padded["attention_mask"].sum()),
                 None if all(w == 1.0 for w in weights) else torch.tensor(weights), long(tied_a), long(tied_b),
                 long(ranking_of_tie))
