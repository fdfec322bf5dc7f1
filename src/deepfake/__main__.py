from deepfake.cli import main

raise SystemExit(main())
