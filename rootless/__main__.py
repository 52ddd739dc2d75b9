from rootless.cli import main

main()
