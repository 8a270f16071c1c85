from .._worker import main

main()
