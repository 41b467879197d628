from ampcap.cli import main

main()
