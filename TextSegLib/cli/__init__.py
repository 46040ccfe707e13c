"""The ``textseg`` command line. One module per subcommand."""
