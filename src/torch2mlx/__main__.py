import sys

from torch2mlx.cli import main

sys.exit(main())
