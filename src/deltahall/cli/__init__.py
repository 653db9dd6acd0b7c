"""The ``deltahall`` command line. The library never imports from here."""
