from reid_engine.cli import main

main()
