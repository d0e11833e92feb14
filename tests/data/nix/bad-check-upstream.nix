# Not a registry host name: the daemon's own check refuses it at build time.
{ upstreams.registry = { url = "https://registry.example.org"; }; }
