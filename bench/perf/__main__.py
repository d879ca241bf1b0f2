from bench.perf.command import main

raise SystemExit(main())
