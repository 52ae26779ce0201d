"""The dashboard's home: the period's summary, charts of revenue, invoices and conversion per day
(from `/v1/analytics/*`), and the newest invoices."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from starlette.responses import Response
from starlette.routing import Route

from services.gateway.pages import charts
from services.gateway.pages.dashboard import Dash, dashboard_page
from services.gateway.schemas.analytics import MAX_DAYS, PERIODS

DEFAULT_DAYS = 30
RECENT_INVOICES = 5


def _date(raw: str | None, default: dt.date) -> dt.date | None:
    if not raw:
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        return None


@dashboard_page
async def overview(dash: Dash) -> Response:
    query = dash.request.query_params
    today = dt.datetime.now(dt.UTC).date()
    period = query.get("period", "30d")
    start = _date(query.get("from"), today - dt.timedelta(days=DEFAULT_DAYS - 1))
    end = _date(query.get("to"), today)
    summary = await dash.get("/v1/analytics/summary", {"period": period})
    daily = await dash.get(
        "/v1/analytics/daily",
        {
            "from": start.isoformat() if start else query.get("from"),
            "to": end.isoformat() if end else query.get("to"),
        },
    )
    recent = await dash.get("/v1/invoices", {"limit": str(RECENT_INVOICES)})

    chart_views: dict[str, object] = {}
    days: list[charts.Day] = []
    if daily.ok and start is not None and end is not None:
        days = charts.days_of(daily.body["data"], start, end)
        dates = [d.date for d in days]
        chart_views = {
            "revenue": [
                (
                    currency,
                    charts.bar_chart(
                        f"Revenue per day ({currency})",
                        dates,
                        [
                            charts.Series(
                                f"paid ({currency})",
                                "paid",
                                [d.amounts_paid.get(currency, Decimal(0)) for d in days],
                            )
                        ],
                        f" {currency}",
                    ),
                )
                for currency in charts.currencies_of(days)
            ],
            "invoices": charts.bar_chart(
                "Invoices per day",
                dates,
                [
                    charts.Series("created", "created", [Decimal(d.created) for d in days]),
                    charts.Series("paid", "paid", [Decimal(d.paid) for d in days]),
                ],
            ),
            "conversion": charts.line_chart("Conversion per day", dates, [d.conversion for d in days], "%"),
        }
    return dash.page(
        "dash_overview.html",
        {
            "period": period,
            "periods": PERIODS,
            "summary": summary,
            "daily": daily,
            "from": start.isoformat() if start else query.get("from", ""),
            "to": end.isoformat() if end else query.get("to", ""),
            "max_days": MAX_DAYS,
            "days": days,
            "charts": chart_views,
            "recent": recent,
        },
    )


routes = [Route("/dashboard", overview, methods=["GET"])]
