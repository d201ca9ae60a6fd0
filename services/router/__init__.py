"""The router: drafts every request cheaply, escalates to the heavyweight on entropy."""
