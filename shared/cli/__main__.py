"""``python -m shared.cli`` is ``askbase``."""

from shared.cli import main

if __name__ == "__main__":
    main()
