"""Claude Code jobs: argument lists, stream-json parsing, limit detection."""
