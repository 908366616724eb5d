"""Errors raised for bad user input; each message names the file, row and field involved."""


class InputError(ValueError):
    """A data file or config that cannot be used as given."""


def located(path, message: str, row: int | None = None, field: str | None = None) -> str:
    """Format an error message that points at the offending place in a file.

    `row` is the 1-based data row (the header, when there is one, is not counted).
    """
    where = str(path)
    if row is not None:
        where += f", row {row}"
    if field is not None:
        where += f", field '{field}'"
    return f"{where}: {message}"


class RequestError(InputError):
    """A request to the predictor or the service that cannot be answered as given; `field` names
    the offending part (`history[3]`, `k`, `attributes.developer_id`)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
