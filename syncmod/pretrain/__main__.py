"""`python -m syncmod.pretrain`, `deepspeed --module syncmod.pretrain`, `torchrun -m syncmod.pretrain`."""

import sys

from syncmod.cli import main

sys.exit(main(["pretrain", *sys.argv[1:]]))
