"""``python -m switchboard stubs NAMESPACE -o DIR``: typed stubs of catalog functions."""

from .stubs import main

main()
