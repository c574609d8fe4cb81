"""Project layouts that hold many files: copick projects."""
