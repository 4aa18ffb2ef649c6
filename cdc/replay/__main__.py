import sys

from cdc.replay import main

sys.exit(main())
