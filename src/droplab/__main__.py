from droplab.cli import main

raise SystemExit(main())
