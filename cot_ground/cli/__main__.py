"""``python -m cot_ground.cli``: the ``cot-ground`` command (``[project.scripts]`` in
pyproject.toml points at the same :func:`cot_ground.cli.app.main`)."""

from cot_ground.cli.app import main

if __name__ == "__main__":
    main()
