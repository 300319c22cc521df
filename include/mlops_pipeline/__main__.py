from mlops_pipeline.cli import main

raise SystemExit(main())
