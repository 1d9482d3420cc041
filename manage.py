#!/usr/bin/env python
import sys

from r1studio.cli import main

if __name__ == "__main__":
    sys.argv[0] = "manage.py"
    main()
