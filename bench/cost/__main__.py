import sys

from bench.cost.run import main

sys.exit(main())
