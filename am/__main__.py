import sys

from am.cli import main

sys.exit(main())
