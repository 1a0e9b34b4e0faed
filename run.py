"""Observer entry point."""

import sys


def main() -> int:
    print("observer: the actor system is not wired yet; nothing to run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
