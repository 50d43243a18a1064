from gatewayd.cli.main import main

main()
