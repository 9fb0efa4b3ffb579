from prune_jobs.cli import main

main()
