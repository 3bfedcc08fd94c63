"""Reference till (POS) client for the loyalty API: never blocks or breaks the checkout.

Standard library only. See clients/python/README.md.
"""

from .client import FlushReport, Result, TillClient

__all__ = ["FlushReport", "Result", "TillClient"]
__version__ = "0.1.0"
