import sys

from fsarbench.cli import main

sys.exit(main())
