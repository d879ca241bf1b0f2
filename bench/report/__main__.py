from bench.report.command import main

raise SystemExit(main())
