from flue.cli import main

raise SystemExit(main())
