"""``python -m helu_lightning ...`` runs ``helu-train ...`` (for torchrun and environments without the script)."""

from helu_lightning.commands import main

if __name__ == "__main__":
    main()
