from weakseg.cli import main

main()
