"""Evaluation (filled in with the shipped-model work)."""


def add_parser(sub) -> None:
    pass
