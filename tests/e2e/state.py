"""What the story's steps hand on to each other and to the later checks."""


class Story:
    reference: str = ""  # the incident the story opened, such as INC-2026-0001
    pages_checked: list[str] = []  # pages that passed the axe check


story = Story()
