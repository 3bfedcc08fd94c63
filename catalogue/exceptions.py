from core.exceptions import Conflict


class DuplicateNumber(Conflict):
    code = "DUPLICATE_NUMBER"
    default_message = "That number is already taken."


class DuplicateSku(Conflict):
    code = "DUPLICATE_SKU"
    default_message = "A product with that SKU already exists."
