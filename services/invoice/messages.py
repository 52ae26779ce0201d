"""How the invoice service keeps an idempotent command's answer: as its message's bytes."""

from __future__ import annotations

from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common.views import Reply
from services.invoice import views

INVOICE_REPLY = Reply(views.Invoice, pb.Invoice)
REFUND_REPLY = Reply(views.Refund, pb.Refund)
