import sys

from similarity.cli import main

sys.exit(main())
