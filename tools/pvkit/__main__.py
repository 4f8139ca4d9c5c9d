from pvkit.cli import main

raise SystemExit(main())
