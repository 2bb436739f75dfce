"""Invoices and credit notes (issue 15; SPEC.md §4 "Invoices"; docs/invoices.md).

- ``GET /v1/contracts/{id}/invoices``: the contract's invoices and credit notes.
- ``GET /v1/invoices/{number}``: one of them, by ``Accept``: ``application/json`` (the
  default: the summary and the document as issued), ``application/pdf`` (Factur-X with the
  EN 16931 XML embedded for business customers, a plain PDF for consumers; ``?locale=``
  de | en), ``application/xml`` (the CII XML: EN 16931 / Factur-X, or ``?format=xrechnung``).

Read by the platform, support and admins, like the contract itself. Every read checks the
document against the hash it was issued with.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from api.deps import AdminCaller, ReaderCaller, StateDep
from api.errors import ApiError, reject_nul_bytes
from api.responses import InvoiceListOut, InvoiceOut
from api.schemas import EXTERNAL_ID, ID, error_responses
from core.export import export_month, parse_accounts
from core.invoice_documents import cii_xml, default_pdf
from core.invoicing import InvoiceTampered, invoices_of, summary, verified
from core.models import Contract, Invoice

router = APIRouter(tags=["invoices"], dependencies=[Depends(reject_nul_bytes)])

NUMBER = r"^[A-Za-z0-9_-]{1,64}$"
_MEDIA = ("application/json", "application/pdf", "application/xml", "text/xml")


def _known_query(request: Request, *names: str) -> None:
    """An unknown query parameter is a typo the caller should hear about (422), not a
    filter silently ignored."""
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        raise ApiError(
            422,
            "invalid_input",
            f"{unknown[0]}: unknown query parameter (known: {', '.join(names)})",
            [{"field": name, "message": "unknown query parameter"} for name in unknown],
        )


def _document(row: Invoice) -> dict[str, Any]:
    try:
        return verified(row)
    except InvoiceTampered as exc:
        raise ApiError(500, "integrity_error", str(exc)) from exc


@router.get(
    "/v1/contracts/{contract_id}/invoices",
    summary="The contract's invoices and credit notes",
    responses=error_responses(404),
    response_model=InvoiceListOut,
)
async def list_invoices(
    contract_id: Annotated[str, Path(pattern=ID)], caller: ReaderCaller, state: StateDep
) -> dict[str, Any]:
    with state.sessions() as s:
        if s.get(Contract, contract_id) is None:
            raise ApiError(404, "not_found", f"contract {contract_id} not found")
        rows = invoices_of(s, contract_id)
        return {"contract_id": contract_id, "data": [summary(r) for r in rows]}


def _negotiate(accept: str) -> str:
    """The media type to answer with (RFC 9110 §12.5.1, q-values honoured); 406 if none."""
    offers: list[tuple[float, int, str]] = []
    for n, part in enumerate(p.strip() for p in (accept or "*/*").split(",")):
        if not part:
            continue
        media, *params = (x.strip() for x in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        media = media.lower()
        if media in ("*/*", "application/*"):
            chosen = "application/json"
        elif media in _MEDIA:
            chosen = media
        else:
            continue
        offers.append((-q, n, chosen))
    if not offers:
        raise ApiError(
            406,
            "not_acceptable",
            "Accept: one of application/json, application/pdf, application/xml",
        )
    return sorted(offers)[0][2]


@router.get(
    "/v1/invoices/{number}",
    summary="An invoice or credit note: JSON, PDF or EN 16931 XML by Accept",
    response_class=Response,
    responses={
        **error_responses(404, 406, 422),
        200: {
            "description": "the invoice",
            "model": InvoiceOut,
            "content": {
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                "application/xml": {"schema": {"type": "string"}},
            },
        },
    },
)
async def get_invoice(
    request: Request,
    number: Annotated[str, Path(pattern=NUMBER)],
    caller: ReaderCaller,
    state: StateDep,
    seller_id: Annotated[
        str | None, Query(pattern=EXTERNAL_ID, description="needed when sellers share a number")
    ] = None,
    format: Annotated[
        Literal["facturx", "xrechnung"],
        Query(description="XML flavour: EN 16931 (Factur-X / ZUGFeRD) or XRechnung 3.0 CII"),
    ] = "facturx",
    locale: Annotated[
        Literal["de", "en"] | None, Query(description="PDF language; default the customer's")
    ] = None,
) -> Response:
    _known_query(request, "seller_id", "format", "locale")
    media = _negotiate(request.headers.get("accept", "*/*"))
    with state.sessions() as s:
        query = select(Invoice).where(Invoice.number == number)
        if seller_id is not None:
            query = query.where(Invoice.seller_key == seller_id)
        if caller.seller is not None:
            # a seller-scoped key (issue 14): its seller's invoices only; others are 404
            query = query.where(Invoice.seller_key == caller.seller)
        rows = list(s.scalars(query.limit(2)))
    if not rows:
        raise ApiError(404, "not_found", f"invoice {number} not found")
    if len(rows) > 1:
        raise ApiError(
            422,
            "invalid_input",
            "seller_id: several sellers issued this number; name the seller",
            [{"field": "seller_id", "message": "required: the number is not unique"}],
        )
    row = rows[0]
    document = _document(row)
    filename = f"{row.number}"
    if media == "application/pdf":
        return Response(
            default_pdf(document, locale),
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{filename}.pdf"'},
        )
    if media in ("application/xml", "text/xml"):
        return Response(
            cii_xml(document, format),
            media_type=media,
            headers={"Content-Disposition": f'inline; filename="{filename}.xml"'},
        )
    import json

    body = {**summary(row), "document": document}
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")


@router.get(
    "/v1/exports/datev",
    summary="A month's bookings as DATEV-importable CSV (admin)",
    response_class=Response,
    responses={
        **error_responses(422),
        200: {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}},
    },
)
async def datev_export(
    request: Request,
    caller: AdminCaller,
    state: StateDep,
    month: Annotated[
        str, Query(pattern=r"^2[0-9]{3}-(0[1-9]|1[0-2])$", description="YYYY-MM (2000–2999)")
    ],
    seller_id: Annotated[str, Query(pattern=EXTERNAL_ID)] = "default",
) -> Response:
    """Invoices, credit notes, payments, refunds, dunning fees and write-offs of `month`
    (Europe/Berlin) for one seller, in the columns of a DATEV Buchungsstapel (UTF-8 here;
    `mahnwerk export` writes the ANSI file DATEV imports). docs/invoices.md."""
    _known_query(request, "month", "seller_id")
    if caller.seller is not None and "seller_id" not in request.query_params:
        seller_id = caller.seller  # a seller-scoped key exports its own seller (issue 14)
    if caller.seller is not None and seller_id != caller.seller:
        raise ApiError(404, "not_found", f"seller {seller_id} not found")
    accounts = parse_accounts(state.settings.export_accounts)
    with state.sessions() as s:
        text = export_month(s, month=month, seller_id=seller_id, accounts=accounts)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="buchungen-{seller_id}-{month}.csv"'
        },
    )
