"""What a scenario reports: figures per contender over rounds, and the
ratios between contenders that the targets are about."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


@dataclass
class Contender:
    """One contender's figures, each a list with one value per round."""

    name: str
    label: str
    figures: dict[str, list[float]] = field(default_factory=dict)

    def add(self, figure: str, value: float) -> None:
        self.figures.setdefault(figure, []).append(value)

    def median(self, figure: str) -> float:
        return median(self.figures.get(figure, []))


@dataclass
class Ratio:
    """``of`` / ``to`` on one figure, per round (the two ran back to back),
    and the median of those."""

    label: str
    per_round: list[float]
    target: float | None = None
    higher_is_better: bool = True

    @property
    def median(self) -> float:
        return median(self.per_round)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        if self.higher_is_better:
            return self.median >= self.target
        return self.median <= self.target


@dataclass
class Scenario:
    """A scenario's result; ``skipped`` says why it did not run."""

    number: int
    title: str
    unit: str
    main_figure: str
    # Figures shown in the table, in order; the main figure alone if empty.
    columns: list[str] = field(default_factory=list)
    contenders: list[Contender] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def contender(self, name: str, label: str) -> Contender:
        entry = Contender(name, label)
        self.contenders.append(entry)
        return entry

    def ratio(
        self,
        label: str,
        of: Contender,
        to: Contender,
        figure: str | None = None,
        target: float | None = None,
        higher_is_better: bool = True,
    ) -> Ratio:
        figure = figure or self.main_figure
        pairs = zip(of.figures.get(figure, []), to.figures.get(figure, []))
        entry = Ratio(label, [a / b for a, b in pairs if b], target, higher_is_better)
        self.ratios.append(entry)
        return entry

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "skipped": self.skipped,
            "unit": self.unit,
            "main_figure": self.main_figure,
            "contenders": [
                {
                    "name": c.name,
                    "label": c.label,
                    "medians": {k: c.median(k) for k in c.figures},
                    "rounds": c.figures,
                }
                for c in self.contenders
            ],
            "ratios": [
                {
                    "label": r.label,
                    "median": r.median,
                    "per_round": r.per_round,
                    "target": r.target,
                    "higher_is_better": r.higher_is_better,
                    "met": r.met,
                }
                for r in self.ratios
            ],
            "checks": [{"check": text, "passed": ok} for text, ok in self.checks],
            "notes": self.notes,
        }
