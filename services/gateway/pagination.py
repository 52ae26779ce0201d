"""One pagination for every list: `?limit=&cursor=` in, `{"data": [...], "next_cursor"}` out.

The cursor is opaque: the service that issued it is the one that reads it. Its bounds are the
platform's (libs/common/limits.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, Field

from libs.common import limits
from services.gateway.schemas.base import QueryModel, ResponseModel
from services.gateway.schemas.types import text

T = TypeVar("T", bound=BaseModel)

Cursor = Annotated[str, text(limits.CURSOR_MAX_CHARS, description="`next_cursor` of the previous page.")]


Limit = Annotated[
    int, Field(ge=1, le=limits.PAGE_LIMIT_MAX, description=f"Page size, 1 to {limits.PAGE_LIMIT_MAX}.")
]


class PageQuery(QueryModel):
    limit: Limit = limits.PAGE_LIMIT_DEFAULT
    cursor: Cursor | None = None

    @property
    def cursor_or_empty(self) -> str:
        return self.cursor or ""


class Page(ResponseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")

    @classmethod
    def of(cls, items: Sequence[T], next_cursor: str = "") -> Page[T]:
        return cls(data=list(items), next_cursor=next_cursor or None)


class Listing(ResponseModel, Generic[T]):
    """A list that always fits one page (a merchant's keys, endpoints, an invoice's payments)."""

    data: list[T]
    next_cursor: None = Field(default=None, description="Always null: the whole list is here.")

    @classmethod
    def of(cls, items: Sequence[T]) -> Listing[T]:
        return cls(data=list(items))
