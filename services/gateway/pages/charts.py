"""Charts for the dashboard, drawn on the server as SVG: no chart library, no script, and the
numbers are in the page (each bar's title, and a table) for screen readers and for copying.

The input is the API's own `/v1/analytics/daily` rows: one per day and fiat currency. Amounts
are only summed within one currency; counts add up across currencies, and a day's conversion is
recomputed from the summed counts, never averaged from per-currency rates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 36
PERCENT = Decimal(100)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str  # colours live in the stylesheet (the CSP allows no inline style)
    values: Sequence[Decimal]


@dataclass(frozen=True)
class Day:
    date: str
    created: int
    paid: int
    amounts_paid: dict[str, Decimal]

    @property
    def conversion(self) -> Decimal:
        if self.created == 0:
            return Decimal(0)
        return (Decimal(self.paid) * PERCENT / Decimal(self.created)).quantize(CENT, rounding=ROUND_HALF_UP)


def days_of(rows: Sequence[dict[str, object]], start: dt.date, end: dt.date) -> list[Day]:
    """Every day of the range (a day without rows is a day of zeros), oldest first."""
    by_date: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_date.setdefault(str(row["metric_date"]), []).append(row)
    days = []
    for n in range((end - start).days + 1):
        date = (start + dt.timedelta(days=n)).isoformat()
        found = by_date.get(date, [])
        amounts: dict[str, Decimal] = {}
        for row in found:
            currency = str(row["currency"])
            amounts[currency] = amounts.get(currency, Decimal(0)) + Decimal(str(row["amount_paid"]))
        days.append(
            Day(
                date=date,
                created=sum(int(str(r["invoices_created"])) for r in found),
                paid=sum(int(str(r["invoices_paid"])) for r in found),
                amounts_paid=amounts,
            )
        )
    return days


def currencies_of(days: Sequence[Day]) -> list[str]:
    return sorted({c for d in days for c in d.amounts_paid})


def _nice_max(value: Decimal) -> Decimal:
    """A round top for the axis (1, 2 or 5 times a power of ten) at or above `value`."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (1, 2, 5, 10):
        top = Decimal(step).scaleb(exponent)
        if top >= value:
            return top
    return Decimal(10).scaleb(exponent)


def _fmt(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def _frame(title: str, summary: str, top: Decimal, unit: str, labels: Sequence[str], body: str) -> Markup:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}: '
        f'{escape(summary)}">',
        f"<title>{escape(title)}</title><desc>{escape(summary)}</desc>",
    ]
    for fraction in (Decimal(0), Decimal("0.5"), Decimal(1)):
        y = TOP + plot_h - float(fraction) * plot_h
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_fmt(top * fraction))}{escape(unit)}</text>"
        )
    step = max(1, len(labels) // 6)
    slot = plot_w / max(len(labels), 1)
    for i, label in enumerate(labels):
        if i % step == 0:
            x = LEFT + slot * (i + 0.5)
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                f"{escape(label[5:])}</text>"
            )
    parts.append(body)
    parts.append("</svg>")
    return Markup("".join(parts))  # every text in it is escaped above


def bar_chart(title: str, dates: Sequence[str], series: Sequence[Series], unit: str = "") -> Markup:
    """Grouped bars: one group per day, one bar per series."""
    top = _nice_max(max((v for s in series for v in s.values), default=Decimal(0)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(dates), 1)
    bar_w = slot * 0.8 / max(len(series), 1)
    bars = []
    for i, date in enumerate(dates):
        for j, s in enumerate(series):
            value = s.values[i]
            h = float(value / top) * plot_h
            x = LEFT + slot * i + slot * 0.1 + bar_w * j
            bars.append(
                f'<rect class="bar {escape(s.css_class)}" data-date="{escape(date)}" data-value="{escape(_fmt(value))}" '
                f'x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}">'
                f"<title>{escape(date)}: {escape(_fmt(value))}{escape(unit)} {escape(s.name)}</title></rect>"
            )
    totals = ", ".join(f"{s.name} {_fmt(sum(s.values, Decimal(0)))}{unit} in all" for s in series)
    summary = f"{len(dates)} days from {dates[0]} to {dates[-1]}; {totals}" if dates else "no days"
    return _frame(title, summary, top, unit, dates, "".join(bars))


def line_chart(title: str, dates: Sequence[str], values: Sequence[Decimal], unit: str = "") -> Markup:
    top = _nice_max(max(values, default=Decimal(0)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(dates), 1)
    points = [(LEFT + slot * (i + 0.5), TOP + plot_h - float(v / top) * plot_h) for i, v in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    marks = "".join(
        f'<circle class="point" data-date="{escape(d)}" data-value="{escape(_fmt(v))}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
        f"<title>{escape(d)}: {escape(_fmt(v))}{escape(unit)}</title></circle>"
        for d, v, (x, y) in zip(dates, values, points, strict=True)
    )
    summary = f"{len(dates)} days from {dates[0]} to {dates[-1]}" if dates else "no days"
    return _frame(title, summary, top, unit, dates, f'<polyline class="line" points="{path}"/>{marks}')
