"""Options given before the sub-command (`laclip --root X ...`), shared with every command."""

from dataclasses import dataclass


@dataclass
class State:
    root: str | None = None

    def store(self):
        from laclip.storage import open_store

        return open_store(self.root)


state = State()
