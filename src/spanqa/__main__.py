"""``python -m spanqa ...``: the command line (for launchers such as ``torchrun -m spanqa train``)."""

from spanqa.interfaces.cli import main

if __name__ == "__main__":
    main()
