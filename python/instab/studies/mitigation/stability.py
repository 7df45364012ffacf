"""The stability rows: for each noise scheme and loss, choose alpha (and sigma) on validation, then train on all.

Also the label-free rows, which reuse each loss's chosen setting with the start
model's own probabilities as targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instab.studies.mitigation.config import MitigationConfig
from instab.studies.mitigation.context import StudyContext, TrainingViews
from instab.studies.mitigation.finetune import FineTuner
from instab.studies.mitigation.measuring import measure
from instab.studies.mitigation.noise import DevicePairs, NoiseScheme, PairedImages, Subsample, make_scheme
from instab.studies.mitigation.table import Table


@dataclass
class Candidate:
    """One setting of a scheme: its text and sigma, x per draw (None: the training view) and x' per draw."""

    text: str
    sigma: float | None
    xs: list[np.ndarray] | None
    noisy: list[np.ndarray]


@dataclass
class Choice:
    """The setting and alpha chosen for one loss."""

    candidate: Candidate
    alpha: float


def scheme_texts(scheme_text: str, config: MitigationConfig) -> list[str]:
    """The settings a scheme of ``config.schemes`` stands for: each sigma of a bare ``gaussian``, ``n`` of a
    bare ``subsample``, else the text itself."""
    kind = scheme_text.split(":")[0]
    if kind == "gaussian" and "sigma=" not in scheme_text:
        return [f"gaussian:sigma={s:g}" for s in config.sigmas]
    if kind == "subsample" and "n=" not in scheme_text:
        return [f"subsample:n={config.subsample_n}"]
    return [scheme_text]


def noisy_features(scheme: NoiseScheme, train: TrainingViews, tuner: FineTuner, draws: int,
                   seed: int) -> tuple[list[np.ndarray] | None, list[np.ndarray]]:
    """(x per draw, or None for x = the training device's view; x' per draw) as features.

    A scheme that is not random has one draw; the paired schemes index the second device's features.
    """
    draws = draws if scheme.random else 1
    rows = np.arange(train.n)
    if isinstance(scheme, DevicePairs):
        stacked = np.stack(train.views.computed_features())
        pairs = [scheme.choose(rows, seed, d) for d in range(draws)]
        return [stacked[a, rows] for a, _ in pairs], [stacked[b, rows] for _, b in pairs]
    out = []
    for d in range(draws):
        if isinstance(scheme, Subsample):
            out.append(train.second[scheme.choose(rows, seed, d)])
        elif isinstance(scheme, PairedImages):
            out.append(train.second)
        else:
            out.append(tuner.features(scheme.perturb(train.x_images, rows, seed, d)))
    return None, out


class AlphaSearch:
    """Chooses a setting and alpha per loss on the validation split of the training images.

    A setting's score is its validation instability plus any accuracy lost against
    the start model; each validation run is appended to ``ctx.search`` and logged.
    """

    def __init__(self, ctx: StudyContext) -> None:
        self.ctx = ctx
        t = ctx.train
        self.baseline: dict[str, Any] | None = None
        if len(t.val):
            self.baseline = measure(ctx.tuner.predict(ctx.tuner.head0, t.views, t.val), t.val_labels)

    def select(self, loss: str, candidates: list[Candidate]) -> Choice:
        """The best (candidate, alpha) for ``loss``; the first one when there is nothing to compare or no validation."""
        alphas = self.ctx.config.alphas[loss]
        if self.baseline is None or len(candidates) * len(alphas) == 1:
            return Choice(candidates[0], alphas[0])
        best: tuple[float, Candidate, float] | None = None
        for cand in candidates:
            for alpha in alphas:
                score = self.score(loss, cand, alpha, self.baseline["accuracy"])
                if best is None or score < best[0]:
                    best = (score, cand, alpha)
        assert best is not None
        return Choice(best[1], best[2])

    def score(self, loss: str, cand: Candidate, alpha: float, baseline_accuracy: float) -> float:
        """Train on the fit rows, measure on the validation rows, record and return the score."""
        ctx, t = self.ctx, self.ctx.train
        x_fit = [x[t.fit] for x in cand.xs] if cand.xs is not None else t.x[t.fit]
        head = ctx.tuner.fit(loss, alpha, x_fit, t.labels[t.fit], [f[t.fit] for f in cand.noisy])
        m = measure(ctx.tuner.predict(head, t.views, t.val), t.val_labels)
        score = m["instability"] + max(0.0, baseline_accuracy - m["accuracy"])
        ctx.search.append({"loss": loss, "noise": cand.text, "sigma": cand.sigma, "alpha": alpha,
                           "val_accuracy": m["accuracy"], "val_instability": m["instability"], "score": score})
        ctx.log(f"    val {loss} {cand.text} alpha={alpha:g}: acc {m['accuracy']:.4f} instab {m['instability']:.4f}")
        return score


@dataclass
class StabilityPicks:
    """What the stability rows chose, for the later steps."""

    chosen: dict[tuple[str, str], Choice] = field(default_factory=dict)  # (loss, scheme kind) -> choice
    best_row: dict[str, int] = field(default_factory=dict)  # loss -> its most stable row
    paired_row: dict[str, int] = field(default_factory=dict)  # loss -> its two-images row

    def record(self, loss: str, kind: str, choice: Choice, table: Table) -> None:
        """Note the row just added to ``table`` for (loss, kind)."""
        self.chosen[(loss, kind)] = choice
        if kind == "two-images":
            self.paired_row[loss] = table.last
        k = self.best_row.get(loss)
        if k is None or table.rows[table.last]["instability"] < table.rows[k]["instability"]:
            self.best_row[loss] = table.last

    def label_free_choice(self, loss: str) -> Choice | None:
        """The two-images choice of ``loss`` where there is one, else its first."""
        return self.chosen.get((loss, "two-images")) or next(
            (v for (l_, _), v in self.chosen.items() if l_ == loss), None)


def _candidates(ctx: StudyContext, scheme_text: str, picks: StabilityPicks) -> list[Candidate] | None:
    """The settings of one scheme with their features; None when it repeats the two-images rows instead."""
    t, cands = ctx.train, []
    for text in scheme_texts(scheme_text, ctx.config):
        scheme = make_scheme(text, second=t.second_images, labels=t.labels, pool_seed=ctx.seed, views=t.views.images)
        if isinstance(scheme, Subsample) and scheme.same_as_paired and picks.paired_row:
            # One photo per class: x' is the paired photo, so training would repeat two-images exactly.
            for loss, i in picks.paired_row.items():
                ctx.table.repeat(i, noise="subsample", scheme=scheme.describe(), same_as="two-images")
                ctx.log(f"  stability {loss} subsample: every class has one photo, same as two-images")
            return None
        xs, noisy = noisy_features(scheme, t, ctx.tuner, ctx.config.draws, ctx.seed)
        cands.append(Candidate(scheme.describe(), getattr(scheme, "sigma", None), xs, noisy))
    return cands


def add_stability_rows(ctx: StudyContext) -> StabilityPicks:
    """One ``stability`` row per scheme and loss: the chosen setting trained on every training image."""
    search = AlphaSearch(ctx)
    picks = StabilityPicks()
    t = ctx.train
    for scheme_text in ctx.config.schemes:
        kind = scheme_text.split(":")[0]
        cands = _candidates(ctx, scheme_text, picks)
        if cands is None:
            continue
        for loss in ctx.config.losses:
            choice = search.select(loss, cands)
            cand = choice.candidate
            head = ctx.tuner.fit(loss, choice.alpha, cand.xs if cand.xs is not None else t.x, t.labels, cand.noisy)
            noise = cand.text.split(":")[0] if kind != "env" else cand.text
            ctx.table.add("stability", loss, noise, choice.alpha, ctx.measure(head), sigma=cand.sigma, head=head,
                          scheme=cand.text)
            picks.record(loss, kind, choice, ctx.table)
    return picks


def add_label_free_rows(ctx: StudyContext, picks: StabilityPicks) -> None:
    """Label-free rows: the start model's probabilities on x (as in distillation) are the targets, per loss
    with its two-images setting where present."""
    if not ctx.config.label_free:
        return
    targets = ctx.tuner.soft_targets(ctx.train.x)
    for loss in ctx.config.losses:
        choice = picks.label_free_choice(loss)
        if choice is None:
            continue
        cand = choice.candidate
        # Where x varies by draw (devices), image i's target is still the start model on the training view.
        head = ctx.tuner.fit(loss, choice.alpha, ctx.train.x if cand.xs is None else cand.xs, targets, cand.noisy)
        ctx.table.add("stability (label-free)", loss, cand.text.split(":")[0], choice.alpha, ctx.measure(head),
                      sigma=cand.sigma, head=head, scheme=cand.text)


__all__ = [
    "AlphaSearch",
    "Candidate",
    "Choice",
    "StabilityPicks",
    "add_label_free_rows",
    "add_stability_rows",
    "noisy_features",
    "scheme_texts",
]
