"""``python -m edgeclf`` runs the command line."""
from edgeclf.cli import main

main(prog_name="edgeclf")
