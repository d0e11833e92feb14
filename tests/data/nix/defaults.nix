# Only enable: every default.
{ }
