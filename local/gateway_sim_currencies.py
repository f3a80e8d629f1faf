"""The currencies the simulated gateways accept for an order.

Razorpay takes "more than 100 foreign currencies" (payments/payments/international-payments) and Cashfree
"140+ currencies" (payments/international-payments/ipg/currencies-supported): between them nearly every
currency in ISO 4217. The simulator accepts the active ISO 4217 codes and refuses anything else ("XYZ",
"inr"), which is the refusal a caller can actually trigger by mistake; which foreign currencies an
account has enabled is dashboard configuration the simulator does not model.
"""

from __future__ import annotations

ISO_4217 = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
    GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
    NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD
    SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD
    XOF XPF YER ZAR ZMW ZWL
    """.split()  # noqa: SIM905 (a table of codes reads better than 160 quoted strings)
)
