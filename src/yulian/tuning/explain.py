"""Why did the classifier say that? Token attributions by integrated gradients (Captum), as JSON, HTML and PNG.

```
from yulian.tuning.explain import Explainer

explainer = Explainer("runs/sst2")                 # a `yulian train` classifier folder (or an adapter folder)
exp = explainer.explain("the plot was thin but the acting was superb")
exp.label, exp.score                               # "positive", 0.97
[(w.text, round(w.score, 3)) for w in exp.words]   # [("the", 0.01), ..., ("superb", 0.61)]
exp.to_html()                                      # the text with each word tinted by its attribution
exp.save_png("why.png")                            # a bar chart of the words' attributions
```

Integrated gradients (Sundararajan et al. 2017) integrates the gradient of the target class probability along a
straight path from a baseline input to the real one, in embedding space: Captum's `LayerIntegratedGradients`
over the model's input embeddings, with a baseline that keeps the special tokens and puts the padding token
everywhere else. The attributions of a text's tokens add up to p(target | text) - p(target | baseline), up to
the integration error that `delta` reports (more `steps`, smaller delta). Sub-word attributions are summed into
words; Chinese text is explained character by character. `yulian explain --model DIR "text"` prints the JSON.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.models.char_tokens import has_cjk

__all__ = ["Explainer", "Explanation", "WordAttribution", "explain_command"]


@dataclass(frozen=True)
class WordAttribution:
    """One word's (or Chinese character's) share of the prediction.

    Attributes:
        text: the word as it appears in the input: `input[start:end]`.
        start: character offset of the word. end: one past its last character.
        score: its attribution, in units of the target class probability (positive: pushes towards the label).
    """

    text: str
    start: int
    end: int
    score: float


@dataclass
class Explanation:
    """A prediction and the attributions behind it.

    Attributes:
        text: the input. label: the explained class (the predicted one unless asked otherwise).
        score: the model's probability of `label`. baseline_score: its probability on the baseline input.
        words: attributions per word, in text order; their sum is about `score - baseline_score`.
        delta: the integration error (Captum's convergence delta): how far the sum is from the exact difference.
        probabilities: the model's probability of every label.
    """

    text: str
    label: str
    score: float
    baseline_score: float
    words: list[WordAttribution]
    delta: float
    probabilities: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    def to_json(self) -> str:
        """One JSON object (UTF-8 text kept as is)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def to_html(self) -> str:
        """The text with each word tinted: green pushes towards the label, red away; hover shows the number."""
        top = max((abs(w.score) for w in self.words), default=0.0) or 1.0
        parts: list[str] = []
        at = 0
        for w in self.words:
            parts.append(html.escape(self.text[at : w.start]))
            alpha = min(1.0, abs(w.score) / top)
            colour = "22,163,74" if w.score >= 0 else "220,38,38"
            parts.append(
                f'<span title="{w.score:+.4f}" style="background: rgba({colour},{alpha:.2f}); '
                f'border-radius: 3px; padding: 0 1px">{html.escape(w.text)}</span>'
            )
            at = w.end
        parts.append(html.escape(self.text[at:]))
        head = (
            f"<p><b>{html.escape(self.label)}</b> {self.score:.3f} "
            f"(baseline {self.baseline_score:.3f}, integration error {self.delta:+.4f})</p>"
        )
        lang = "zh" if has_cjk(self.text) else "en"
        return f'<div class="yulian-explanation" lang="{lang}">{head}<p>{"".join(parts)}</p></div>'

    def save_html(self, path: str | Path) -> Path:
        """Write a standalone HTML page with `to_html()`."""
        out = Path(path)
        page = (
            '<!doctype html><meta charset="utf-8"><title>yulian explain</title>'
            f'<body style="font: 18px sans-serif">{self.to_html()}</body>'
        )
        out.write_text(page, encoding="utf-8")
        return out

    def save_png(self, path: str | Path) -> Path:
        """A horizontal bar chart of the words' attributions (Chinese glyphs need a CJK font, e.g. fonts-noto-cjk)."""
        matplotlib = require("matplotlib", extra="tune", purpose="plotting explanations")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        _cjk_font(plt)
        words = self.words or [WordAttribution("(empty)", 0, 0, 0.0)]
        fig, ax = plt.subplots(figsize=(7, max(2.0, 0.32 * len(words) + 1)))
        ys = list(range(len(words)))[::-1]
        ax.barh(ys, [w.score for w in words], color=["#16a34a" if w.score >= 0 else "#dc2626" for w in words])
        ax.set_yticks(ys, [w.text for w in words])
        ax.axvline(0, color="#555", linewidth=0.8)
        ax.set_xlabel(f"attribution to p({self.label})")
        ax.set_title(f"{self.label} {self.score:.3f} (baseline {self.baseline_score:.3f})")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


def _cjk_font(plt: Any) -> None:
    """Use an installed CJK font for the labels when there is one (matplotlib's default has no Chinese glyphs)."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "SimHei", "Microsoft YaHei"):
        if name in names:
            plt.rcParams["font.sans-serif"] = [name, *plt.rcParams["font.sans-serif"]]
            return


class Explainer:
    """Integrated-gradients explanations for a sequence classifier folder (full model or adapter).

    Args:
        model: the folder `yulian train --task classification` wrote (or any transformers classifier folder).
        steps: integration steps (50 is Captum's default; the error `delta` shrinks as they grow).
        max_length: tokens per text (longer texts are truncated; the explained words are those kept).
        internal_batch_size: path points per forward pass (memory vs speed).
    """

    def __init__(self, model: str | Path, *, steps: int = 50, max_length: int = 256, internal_batch_size: int = 25):
        if steps < 2:
            raise ValueError(f"steps must be at least 2, got {steps}")
        self.path = Path(model)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such model folder")
        self.steps, self.max_length, self.internal_batch_size = steps, max_length, internal_batch_size
        self._model: Any = None
        self._tokenizer: Any = None

    def warm_up(self) -> Explainer:
        """Load the model and tokenizer now (otherwise on the first explanation)."""
        if self._model is None:
            require("torch", extra="hf", purpose="explanations")
            transformers = require("transformers", extra="hf")
            from yulian.tuning.adapters import load_model

            self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.path))
            self._model = load_model("AutoModelForSequenceClassification", self.path).eval()
        return self

    @property
    def labels(self) -> list[str]:
        """The classifier's labels in id order."""
        self.warm_up()
        mapping = self._model.config.id2label
        return [str(mapping[i]) for i in range(len(mapping))]

    def explain(self, text: str, target: str | int | None = None) -> Explanation:
        """Attribute the probability of `target` (a label or its id; default: the predicted label) to `text`'s words."""
        return self.explain_batch([text], target)[0]

    def explain_batch(self, texts: Sequence[str], target: str | int | None = None) -> list[Explanation]:
        """`explain` for several texts (one at a time through the integration path; batched inside it)."""
        torch = require("torch", extra="hf", purpose="explanations")
        captum_attr = require("captum.attr", extra="tune", purpose="integrated gradients")
        self.warm_up()
        model, tok = self._model, self._tokenizer
        labels = self.labels
        out: list[Explanation] = []
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"explain takes non-empty text, got {text!r:.60}")
            pieces, spans = _encode(tok, text, self.max_length)
            ids = torch.tensor([pieces["input_ids"]])
            mask = torch.ones_like(ids)
            special = torch.tensor([pieces["special_tokens_mask"]], dtype=torch.bool)
            pad = tok.pad_token_id if tok.pad_token_id is not None else 0
            baseline = torch.where(special, ids, torch.full_like(ids, pad))
            with torch.no_grad():
                probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)[0]
                base_probs = torch.softmax(model(input_ids=baseline, attention_mask=mask).logits.float(), -1)[0]
            index = _target(target, labels, int(probs.argmax()))

            def forward(input_ids: Any, attention_mask: Any) -> Any:
                return torch.softmax(model(input_ids=input_ids, attention_mask=attention_mask).logits.float(), -1)

            lig = captum_attr.LayerIntegratedGradients(forward, model.get_input_embeddings())
            attributions, delta = lig.attribute(
                ids,
                baselines=baseline,
                target=index,
                additional_forward_args=(mask,),
                n_steps=self.steps,
                internal_batch_size=self.internal_batch_size,
                return_convergence_delta=True,
            )
            per_token = attributions.sum(dim=-1)[0].tolist()
            words = _words(text, spans, per_token)
            out.append(
                Explanation(
                    text=text,
                    label=labels[index],
                    score=float(probs[index]),
                    baseline_score=float(base_probs[index]),
                    words=words,
                    delta=float(delta[0]),
                    probabilities={label: float(p) for label, p in zip(labels, probs.tolist(), strict=True)},
                )
            )
        return out


def _target(target: str | int | None, labels: list[str], predicted: int) -> int:
    if target is None:
        return predicted
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit() and target not in labels):
        if not 0 <= int(target) < len(labels):
            raise ValueError(f"target {target} is not a label id (0..{len(labels) - 1})")
        return int(target)
    if target not in labels:
        raise ValueError(f"unknown target label {target!r} (labels: {', '.join(labels)})")
    return labels.index(target)


def _encode(tok: Any, text: str, max_length: int) -> tuple[dict[str, list[int]], list[tuple[int, int] | None]]:
    """Token ids with special tokens, and each token's word span (None for special tokens). Words are
    whitespace-separated runs, and every CJK character is a word of its own."""
    from yulian.models.char_tokens import char_encoding, word_marker_id

    marker = word_marker_id(tok)
    if marker is not None and has_cjk(text):
        enc: Any = char_encoding(tok, [text], marker)
        ids, offsets, special = enc["input_ids"][0], enc["offset_mapping"][0], enc["special_tokens_mask"][0]
        if len(ids) > max_length:
            keep = max_length - 1
            ids, offsets, special = ids[:keep] + ids[-1:], offsets[:keep] + offsets[-1:], special[:keep] + special[-1:]
    else:
        enc = tok(
            text, truncation=True, max_length=max_length, return_offsets_mapping=True, return_special_tokens_mask=True
        )
        ids, offsets, special = enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"]
    bounds = _word_bounds(text)
    spans: list[tuple[int, int] | None] = []
    for (start, end), is_special in zip(offsets, special, strict=True):
        if is_special or end <= start:
            spans.append(None)
            continue
        spans.append(next(((s, e) for s, e in bounds if s <= start < e), (start, end)))
    return {"input_ids": list(ids), "special_tokens_mask": list(special)}, spans


def _word_bounds(text: str) -> list[tuple[int, int]]:
    bounds: list[tuple[int, int]] = []
    start: int | None = None
    for i, ch in enumerate(text):
        if ch.isspace() or has_cjk(ch):
            if start is not None:
                bounds.append((start, i))
                start = None
            if not ch.isspace():
                bounds.append((i, i + 1))
        elif start is None:
            start = i
    if start is not None:
        bounds.append((start, len(text)))
    return bounds


def _words(text: str, spans: list[tuple[int, int] | None], scores: list[float]) -> list[WordAttribution]:
    summed: dict[tuple[int, int], float] = {}
    for span, score in zip(spans, scores, strict=True):
        if span is not None and math.isfinite(score):
            summed[span] = summed.get(span, 0.0) + score
    return [WordAttribution(text[s:e], s, e, v) for (s, e), v in sorted(summed.items())]


def explain_command(
    text: str,
    model: str = "runs/model",
    target: str | None = None,
    steps: int = 50,
    html: str | None = None,
    png: str | None = None,
) -> int:
    """Explain a classifier's prediction: integrated-gradients attributions per word, as JSON on stdout.

    Args:
        text: the text to explain.
        model: the classifier folder (`yulian train --task classification --out`).
        target: the label to explain (default: the predicted one).
        steps: integration steps (more: smaller integration error).
        html: also write the text tinted by attribution to this HTML file.
        png: also write a bar chart of the attributions to this PNG file.
    """
    explanation = Explainer(model, steps=steps).explain(text, target)
    print(explanation.to_json())
    if html:
        explanation.save_html(html)
    if png:
        explanation.save_png(png)
    return 0
