from core.exceptions import Conflict


class DuplicateIdentifier(Conflict):
    code = "DUPLICATE_IDENTIFIER"
    default_message = "Another contact already has this identifier."


class ContactNotActive(Conflict):
    code = "CONTACT_NOT_ACTIVE"
    default_message = "The contact is not active."
