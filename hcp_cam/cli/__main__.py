from hcp_cam.cli import console_main

console_main()
