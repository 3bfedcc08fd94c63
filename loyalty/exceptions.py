from core.exceptions import Conflict, ValidationError


class DuplicateIdentifier(Conflict):
    code = "DUPLICATE_IDENTIFIER"
    default_message = "Another contact already has this identifier."


class ContactNotActive(Conflict):
    code = "CONTACT_NOT_ACTIVE"
    default_message = "The contact is not active."


class DuplicateTier(Conflict):
    code = "DUPLICATE_TIER"
    default_message = "A tier with that rank or name already exists in this mode."


class OtpRequired(ValidationError):
    code = "OTP_REQUIRED"
    default_message = "Spending needs a one-time spend token (otp)."


class OtpInvalid(ValidationError):
    code = "OTP_INVALID"
    default_message = "The one-time spend token is wrong."


class OtpExpired(ValidationError):
    code = "OTP_EXPIRED"
    default_message = "The one-time spend token has expired; ask for a new one."


class OtpUsed(Conflict):
    code = "OTP_USED"
    default_message = "The one-time spend token was already used; ask for a new one."


class OtpLocked(Conflict):
    code = "OTP_LOCKED"
    default_message = "Too many wrong attempts: the one-time spend token is locked; ask for a new one."


class PayoutNotPending(Conflict):
    code = "PAYOUT_NOT_PENDING"
    default_message = "The pay-out is already settled."


class CursorExpired(Conflict):
    code = "CURSOR_EXPIRED"
    default_message = (
        "This cursor is older than the change feed's retention: changes after it may be gone. "
        "Download all contacts again from an empty cursor."
    )
