from vodimg.cli import main

main()
