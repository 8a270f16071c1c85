"""The function is a plain Python function: test it as one (`python3 -m pytest`)."""

from main import {{ident}}


def test_greets_by_name() -> None:
    assert {{ident}}("Ada") == {"greeting": "Hello, Ada."}
    assert {{ident}}("Ada", excited=True) == {"greeting": "Hello, Ada!"}
