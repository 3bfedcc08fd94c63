from core.exceptions import Conflict, LimitExceeded


class OfferNotAvailable(Conflict):
    code = "OFFER_NOT_AVAILABLE"
    default_message = "The offer is not available."


class OfferLocked(Conflict):
    code = "OFFER_LOCKED"
    default_message = "The offer is locked by another transaction."


class OfferNotApplicable(Conflict):
    code = "OFFER_NOT_APPLICABLE"
    default_message = "The offer does not apply to this basket here and now."


class OfferLimitReached(LimitExceeded):
    code = "LIMIT_EXCEEDED"
    kind = "conflict"
    default_message = "The offer's redemption limit has been reached."
