from nnbias.cli import main

main()
