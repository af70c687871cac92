import sys

from hcp_cam.cli import main

sys.exit(main())
