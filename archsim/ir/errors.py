"""The one error type for user mistakes (bad YAML, unknown key, a buffer too
small for one tile, an unsupported layer). It names the file and the field so
the CLI can print it on one line and exit 2 without a traceback."""


class ArchsimError(Exception):
    def __init__(self, message: str, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        self.message = message
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.file:
            where += f"{self.file}"
        if self.field:
            where += f"{': ' if where else ''}{self.field}"
        return f"{where}: {self.message}" if where else self.message
