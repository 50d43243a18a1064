from gatewayd_relay.cli import main

main()
