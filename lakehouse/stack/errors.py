"""The one error type of the stack command: what went wrong, and how to fix it."""


class StackError(RuntimeError):
    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}\n  fix: {fix}")
