from cotembed.cli.main import main

raise SystemExit(main())
