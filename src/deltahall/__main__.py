import sys

from deltahall.cli.main import main

sys.exit(main())
