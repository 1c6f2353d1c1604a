"""``python -m edgeclf`` runs the command line."""
from .cli import main

main(prog_name="edgeclf")
