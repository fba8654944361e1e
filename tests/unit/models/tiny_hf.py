"""Tiny BERT models and tokenizers built inline for the transformers predictor tests (no files shipped, no hub).

`save_random` writes an untrained tiny model; `save_crafted` writes one whose per-token outputs are set by hand:
its encoder layers are zeroed so each final hidden state depends only on its own token, and the head maps chosen
tokens to chosen tags (token classification) or to answer start/end (QA). Tests then know exactly what the
model predicts and check the predictor's offsets, merging, windowing and scoring against it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (  # noqa: SIM905 - a sentence of words reads better than a long list literal
    "the quick brown fox jumps over lazy dog john smith lives in paris new york where is it who what i live now "
    "filler word and a of to works at apple good bad film movie great awful this was very query passage"
).split()
SUBWORDS = ["##ian", "##s", "##ing", "##er"]
PUNCT = list(".,?!。，？！、")
CHINESE = list("张三丰在北京上海工作我的卡丢了是中国首都人民共和城市住哪里谁")
VOCAB = SPECIALS + WORDS + SUBWORDS + PUNCT + CHINESE


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """Run a test module's tiny models on one thread: on a loaded 2-core machine, a second OpenMP thread makes
    millisecond forward passes take a hundred times longer (measured: 3.5 ms vs 170 ms per call)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_tokenizer(folder: Path) -> Any:
    """A lower-casing BERT WordPiece tokenizer over VOCAB (CJK characters split one per token)."""
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(VOCAB)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, tokenize_chinese_chars=True)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


SP_PIECES = ["<unk>", "<s>", "</s>", "<pad>", "\u2581", "\u2581在", "\u2581john", "北京", *CHINESE]


def sentencepiece_tokenizer(folder: Path | None = None) -> Any:
    """A tiny XLM-R-style Unigram tokenizer over SP_PIECES (<s> ... </s> around a text): split into words, most
    lone Chinese characters come out as the bare "▁" piece plus the character, as with multilingual-e5."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    scored = [(p, -1.0 if p.startswith("\u2581") else -2.0) for p in SP_PIECES]
    tok = Tokenizer(models.Unigram(scored, unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    if folder is not None:
        fast.save_pretrained(str(folder))
    return fast


def tiny_config(**overrides: Any) -> Any:
    from transformers import BertConfig

    settings: dict[str, Any] = {
        "vocab_size": len(VOCAB),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    settings.update(overrides)
    return BertConfig(**settings)


def save_random(folder: Path, model_class: str = "BertModel", seed: int = 0, **config: Any) -> Path:
    """An untrained tiny model of `model_class` with its tokenizer, saved to `folder`."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(tiny_config(**config)).eval()
    model.save_pretrained(str(folder))
    save_tokenizer(folder)
    return folder


def _zero_encoder(model: Any) -> Any:
    """Make every final hidden state LayerNorm(word embedding of its own token): no mixing between tokens."""
    import torch

    bert = model.bert
    with torch.no_grad():
        bert.embeddings.position_embeddings.weight.zero_()
        bert.embeddings.token_type_embeddings.weight.zero_()
        for layer in bert.encoder.layer:
            layer.attention.output.dense.weight.zero_()
            layer.attention.output.dense.bias.zero_()
            layer.output.dense.weight.zero_()
            layer.output.dense.bias.zero_()
    return bert


def save_crafted_tagger(folder: Path, labels: list[str], tags: Mapping[str, str], scale: float = 12.0) -> Path:
    """A token classifier tagging each token in `tags` (token -> label) with that label, every other token "O"."""
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(0)
    config = tiny_config(
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={tag: i for i, tag in enumerate(labels)}
    )
    model = BertForTokenClassification(config).eval()
    bert = _zero_encoder(model)
    hidden = config.hidden_size
    prototypes = torch.randn(len(labels), hidden)
    ln = torch.nn.functional.layer_norm
    with torch.no_grad():
        emb = bert.embeddings.word_embeddings.weight
        for i, token in enumerate(VOCAB):
            emb[i] = prototypes[labels.index(tags.get(token, "O"))] + 0.05 * torch.randn(hidden)
        model.classifier.weight.copy_(scale * ln(prototypes, (hidden,)) / hidden**0.5)
        model.classifier.bias.zero_()
    model.save_pretrained(str(folder))
    save_tokenizer(folder)
    return folder


def save_crafted_reader(
    folder: Path, starts: set[str], ends: set[str], scale: float = 12.0, no_answer: float = 0.0
) -> Path:
    """A QA model whose answers start on tokens in `starts` and end on tokens in `ends`.

    `no_answer` > 0 gives [CLS] start and end logits between those of answer tokens and the rest, so an
    unanswerable-aware reader answers "" for a context without answer tokens.
    """
    import torch
    from transformers import BertForQuestionAnswering

    torch.manual_seed(0)
    config = tiny_config(num_labels=2)
    model = BertForQuestionAnswering(config).eval()
    bert = _zero_encoder(model)
    hidden = config.hidden_size
    p_start, p_end, p_other = torch.randn(3, hidden)
    ln = torch.nn.functional.layer_norm
    with torch.no_grad():
        emb = bert.embeddings.word_embeddings.weight
        for i, token in enumerate(VOCAB):
            vector = p_other.clone()
            if token in starts:
                vector += 3 * p_start
            if token in ends:
                vector += 3 * p_end
            if token == "[CLS]":
                vector += no_answer * (p_start + p_end)
            emb[i] = vector
        model.qa_outputs.weight.copy_(scale * ln(torch.stack([p_start, p_end]), (hidden,)) / hidden**0.5)
        model.qa_outputs.bias.zero_()
    model.save_pretrained(str(folder))
    save_tokenizer(folder)
    return folder
