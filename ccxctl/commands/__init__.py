"""The ``ccxctl`` commands, a module per family; :mod:`ccxctl.app` assembles them."""
