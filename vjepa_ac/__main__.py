from vjepa_ac.cli import main

raise SystemExit(main())
