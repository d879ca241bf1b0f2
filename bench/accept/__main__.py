from bench.accept.command import main

raise SystemExit(main())
