from fluxlite.cli import main

raise SystemExit(main())
