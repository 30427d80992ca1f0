"""First run and health: ``ccxctl init`` (config, token, user units) and ``ccxctl doctor``."""
